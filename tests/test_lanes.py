"""tools/lanes.py with small Python child processes: order by what each job needs, side by side up to the lane
count, and a failed child named, its neighbour paused by a real SIGINT."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from minbert.errors import TrainingError
from minbert.tools.lanes import Job, Lanes

# writes START and END times (seconds) to its file; SIGINT ends it with 130 after writing "paused"
CHILD = """
import signal, sys, time
out = open(sys.argv[1], "w")
def pause(signum, frame):
    out.write("paused"); out.close(); sys.exit(130)
signal.signal(signal.SIGINT, pause)
out.write(f"{time.time()} "); out.flush()
time.sleep(float(sys.argv[2]))
out.write(f"{time.time()}"); out.close()
sys.exit(int(sys.argv[3]))
"""


def job(tmp: Path, name: str, seconds: float, needs=(), code: int = 0) -> Job:
    return Job(name, frozenset(needs), [sys.executable, "-c", CHILD, str(tmp / f"{name}.times"), str(seconds),
                                        str(code)], tmp / f"{name}.log")


def times(tmp: Path, name: str) -> tuple[float, float]:
    start, end = (tmp / f"{name}.times").read_text().split()
    return float(start), float(end)


def test_jobs_start_when_what_they_need_is_done_and_run_side_by_side(tmp_path):
    done = []
    jobs = [job(tmp_path, "a", 1.0), job(tmp_path, "b", 0.2, needs={"a"}), job(tmp_path, "c", 0.5),
            job(tmp_path, "d", 0.2, needs={"a", "c"})]
    Lanes(jobs, 2, lambda line: None).run(done.append, "hint")
    assert sorted(done) == ["a", "b", "c", "d"] and done.index("c") < done.index("a")
    a, b, c, d = (times(tmp_path, n) for n in "abcd")
    assert c[0] < a[1] and a[0] < c[1]  # a and c at once
    assert b[0] >= a[1] and d[0] >= max(a[1], c[1])


def test_one_lane_runs_one_job_at_a_time(tmp_path):
    jobs = [job(tmp_path, "a", 0.3), job(tmp_path, "b", 0.3)]
    Lanes(jobs, 1, lambda line: None).run(lambda name: None, "hint")
    assert times(tmp_path, "b")[0] >= times(tmp_path, "a")[1]


def test_a_failed_job_is_named_and_its_neighbour_pauses(tmp_path):
    jobs = [job(tmp_path, "slow", 30), job(tmp_path, "bad", 0.5, code=3), job(tmp_path, "later", 0.1, needs={"bad"})]
    start = time.time()
    with pytest.raises(TrainingError, match=r"recipe run bad ended with exit code 3 \(its output: .*bad\.log\).*rerun"):
        Lanes(jobs, 2, lambda line: None).run(lambda name: None, "rerun")
    assert time.time() - start < 20
    assert (tmp_path / "slow.times").read_text().endswith("paused")  # SIGINT, not a kill
    assert not (tmp_path / "later.times").exists()

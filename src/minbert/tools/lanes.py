"""Several training processes at once: `minbert recipe --lanes N` runs up to N of its runs side by side, each a
child process of its own, a run starting once the runs it names are done.

Each child writes its output to a file of its own and runs in a session of its own, so a Ctrl-C at the
terminal reaches the children only through this process: the first SIGINT or SIGTERM is passed on once (each
run pauses at its next optimizer step with `last/` saved, as a single `minbert train` does) and no further run
starts; a second SIGINT is passed on too (the runs stop at once). A child that fails pauses the others the
same way, and the failure names its output file.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .. import writes
from ..errors import WRITE_FAILED, TrainingError
from ..training.interrupts import SIGNALS, TrainingInterrupted

POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Job:
    name: str
    needs: frozenset[str]  # the jobs that must be done before this one starts
    argv: list[str]
    output: Path  # the child's standard output and error, appended


class LanesInterrupted(TrainingInterrupted):
    """The lanes paused on a signal: every running job saved its `last/`."""

    def __init__(self, signum: int, paused: list[str], hint: str):
        self.paused = paused
        super().__init__(signum, 0, 0, Path())
        self.hint = hint

    def message(self) -> str:
        return f"interrupted ({', '.join(self.paused) or 'no run'} paused); {self.hint}"


def last_error(output: Path) -> str | None:
    """The last `minbert: error: cannot write ...` line a child wrote into its output file, if any."""
    try:
        lines = output.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    errors = [line.removeprefix("minbert: error: ") for line in lines if line.startswith("minbert: error: cannot write")]
    return errors[-1] if errors else None


class Lanes:
    def __init__(self, jobs: list[Job], lanes: int, log, done: set[str] | None = None):
        """`done`: the names of jobs finished before, which jobs may need."""
        self.jobs = {j.name: j for j in jobs}
        self.pending, self.lanes, self.log = list(jobs), lanes, log
        self.running: dict[str, subprocess.Popen] = {}
        self.done: set[str] = set(done or ())
        self.failed: dict[str, int] = {}
        self.signum = 0

    def _forward(self, signum: int) -> None:
        for proc in self.running.values():
            try:
                os.kill(proc.pid, signum)
            except ProcessLookupError:
                pass

    def _handle(self, signum, frame) -> None:
        self.signum = self.signum or signum
        self._forward(signum)

    def _start(self, job: Job) -> None:
        writes.append(job.output, f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(job.argv)}\n")
        with writes.failures(job.output), open(job.output, "a", encoding="utf-8") as out:  # the child's output
            self.running[job.name] = subprocess.Popen(job.argv, stdin=subprocess.DEVNULL, stdout=out,
                                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.pending.remove(job)
        self.log(f"lanes: started {job.name} (output in {job.output})")
        if self.signum:  # the signal came while it was starting
            self._forward(self.signum)

    def _reap(self) -> list[str]:
        ended = []
        for name, proc in list(self.running.items()):
            if proc.poll() is None:
                continue
            del self.running[name]
            ended.append(name)
            if proc.returncode == 0:
                self.done.add(name)
            else:
                self.failed[name] = proc.returncode
                if not self.signum:  # pause the others: their work is kept for the rerun
                    self._forward(signal.SIGINT)
        return ended

    def run(self, on_done, hint: str) -> None:
        """Run every job; `on_done(name)` after each success. A signal raises LanesInterrupted once every child
        has paused; a failed child raises TrainingError."""
        main_thread = threading.current_thread() is threading.main_thread()
        previous = {s: signal.signal(s, self._handle) for s in SIGNALS} if main_thread else {}
        try:
            while self.pending or self.running:
                if not self.signum and not self.failed:
                    ready = [j for j in self.pending if j.needs <= self.done]
                    for job in ready[:self.lanes - len(self.running)]:
                        self._start(job)
                if not self.running:
                    break  # stopped, failed, or nothing can start
                time.sleep(POLL_SECONDS)
                for name in self._reap():
                    if name in self.done:
                        on_done(name)
        except BaseException:
            self._forward(signal.SIGKILL)  # this process fails: no child goes on unwatched
            raise
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        paused = sorted(n for n, code in self.failed.items() if code in (128 + signal.SIGINT, 128 + signal.SIGTERM))
        broken = {n: code for n, code in self.failed.items() if n not in paused or not self.signum}
        if broken:
            name, code = next(iter(broken.items()))
            failed_write = last_error(self.jobs[name].output) if code == WRITE_FAILED else None
            why = f" ({failed_write})" if failed_write else ""
            raise TrainingError(f"recipe run {name} ended with exit code {code}{why} (its output: "
                                f"{self.jobs[name].output}); the runs beside it paused; {hint}")
        if self.signum:
            raise LanesInterrupted(self.signum, paused, hint)
        if self.pending:
            raise TrainingError(f"recipe runs {', '.join(j.name for j in self.pending)} wait for runs that never end")

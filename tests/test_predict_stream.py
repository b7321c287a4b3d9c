"""Prediction as a stream: files larger than a chunk give the rows and order of one unchunked pass, inputs are
read only as results are asked for, standard input is answered before it closes, and a signal mid-file
leaves no output file and no traceback. Checked against the one-chunk result, direct model calls, Python's
csv reader and real subprocesses stopped with real signals."""
from __future__ import annotations

import csv
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import minbert
from minbert.cli import main
from minbert.config import ConfigError
from minbert.tasks import COURSE_TASKS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_backbone, small_data_dir) -> Path:
    out = tmp_path_factory.mktemp("run-stream")
    minbert.train(out=out, data_dir=small_data_dir, **{
        "model.backbone": tiny_backbone, "train.epochs": 1, "train.schedule.steps_per_epoch": 2, "train.threads": 1,
        "train.batch_size": {"sst": 8, "para": 8, "sts": 8}, "eval.test_predictions": False})
    return out


def sentences(data_dir: Path, n: int) -> list[str]:
    texts = [e.texts[0] for e in COURSE_TASKS["sst"].read(data_dir, "dev")[0]]
    return [texts[i % len(texts)] for i in range(n)]


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(text.splitlines()))


def test_a_file_larger_than_a_chunk_gives_the_unchunked_rows_in_order(run, small_data_dir, tmp_path, capsys):
    texts = sentences(small_data_dir, 60)
    path = tmp_path / "in.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "sentence"])
        w.writerows([f"x{i}", t] for i, t in enumerate(texts))
        w.writerow(["bad", ""])  # a bad row in the last chunk: still named and counted
    outs = {}
    for size in ("7", "100000"):  # 9 chunks, and the whole file in one
        assert main(["predict", str(run), "--task", "sst", "--input", str(path), "--chunk-size", size]) == 0
        captured = capsys.readouterr()
        assert f"{path}: 61 rows, 60 kept, 1 skipped" in captured.err and f"{path}:62: empty sentence" in captured.err
        outs[size] = csv_rows(captured.out)
    chunked, whole = outs["7"], outs["100000"]
    assert chunked[0] == whole[0] and [r[0] for r in chunked[1:]] == [f"x{i}" for i in range(60)]
    assert [r[:2] for r in chunked] == [r[:2] for r in whole]  # ids, order and classes
    np.testing.assert_allclose(np.array([r[2:] for r in chunked[1:]], float),
                               np.array([r[2:] for r in whole[1:]], float), atol=2e-6)
    predictor = minbert.load(run)  # one text at a time, unpadded, straight through the model
    with torch.inference_mode():
        logits = torch.stack([predictor.model("sst", [predictor.tokenizer.pad(predictor.tokenizer.encode([t]))])[0]
                              for t in texts])
    np.testing.assert_allclose(np.array([r[2:] for r in chunked[1:]], float), torch.softmax(logits, -1).numpy(),
                               atol=1e-5)


def test_predict_iter_reads_only_as_far_as_the_results_asked_for(run, small_data_dir, tmp_path):
    predictor = minbert.load(run)
    pairs = [tuple(e.texts) for e in COURSE_TASKS["sts"].read(small_data_dir, "dev")[0]]
    consumed = []

    def source():
        for pair in pairs:
            consumed.append(pair)
            yield pair
    stream = predictor.predict_iter("sts", source(), chunk_size=8)
    first = next(stream)
    assert len(first) == 8 and len(consumed) == 8  # nothing read beyond the chunk scored
    rest = list(stream)
    assert [len(p) for p in rest] == [8] * (len(pairs) // 8 - 1) + ([len(pairs) % 8] if len(pairs) % 8 else [])
    joined = [i for p in [first, *rest] for i in p.ids]
    whole = predictor.predict("sts", pairs)  # one chunk
    assert joined == whole.ids == [str(i) for i in range(1, len(pairs) + 1)]
    np.testing.assert_allclose(np.concatenate([p.predictions for p in [first, *rest]]), whole.predictions, atol=1e-5)

    texts = sentences(small_data_dir, 50)  # encode_iter into a memory-mapped array, without a list of the texts
    width = predictor.encode(texts[:1]).shape[1]
    vectors = np.lib.format.open_memmap(tmp_path / "vectors.npy", mode="w+", dtype=np.float32, shape=(50, width))
    start = 0
    for chunk in predictor.encode_iter((t for t in texts), chunk_size=16):
        vectors[start:start + len(chunk)] = chunk
        start += len(chunk)
    vectors.flush()
    np.testing.assert_allclose(np.load(tmp_path / "vectors.npy"), predictor.encode(texts), atol=1e-5)
    with pytest.raises(ConfigError, match="not one string"):
        predictor.predict("sst", "a sentence, not a list")
    with pytest.raises(ConfigError, match="item 2 is 7"):
        predictor.encode(["fine", 7])


def test_strict_stops_before_any_output_even_in_a_late_chunk(run, tmp_path, capsys):
    path = tmp_path / "late.tsv"
    path.write_text("sentence\n" + "Fine.\n" * 20 + "\n".join(["A row\twith a stray field"]) + "\n")
    out = tmp_path / "out.csv"
    assert main(["predict", str(run), "--task", "sst", "--input", str(path), "--strict", "--chunk-size", "4"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip() == f"minbert: error: {path}:22: expected 1 columns, found 2"
    assert main(["predict", str(run), "--task", "sst", "--input", str(path), "--strict", "--output", str(out)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"{path}:22: expected 1 columns, found 2")
    assert list(tmp_path.iterdir()) == [path]
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert main(["predict", str(run), "--task", "sst", "--input", str(path), "--output", str(folder)]) == 2
    assert capsys.readouterr().err.strip().startswith(f"minbert: error: --output {folder} is a folder; name the file")
    nested = tmp_path / "new" / "folder" / "out.jsonl"  # folders that do not exist yet are made
    assert main(["predict", str(run), "--task", "sst", "--input", str(path), "--output", str(nested)]) == 0
    assert len(nested.read_text().splitlines()) == 20 and f"{path}:22: expected 1 columns" in capsys.readouterr().err


def test_bytes_that_are_not_utf8_name_their_line_and_offset(run, tmp_path, capsys):
    raw = b"id,sentence\n1,Fine.\n2,caf\xe9 au lait\n"
    path = tmp_path / "latin1.csv"
    path.write_bytes(raw)
    assert main(["predict", str(run), "--task", "sst", "--input", str(path)]) == 2
    offset = raw.index(b"\xe9")
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"minbert: error: {path}:3: not UTF-8 text (byte 0xe9 at offset {offset})")


def minbert_process(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "minbert", *args], cwd=REPO, env=env, text=True, **kw)


class PipeLines:
    """Lines from a process's pipe, read straight from its descriptor (a buffered reader may hold a line that
    select() no longer sees), failing (not hanging) when none comes within `timeout` seconds."""

    def __init__(self, stream):
        self.fd, self.buffer = stream.fileno(), b""

    def read_line(self, timeout: float = 120) -> str:
        deadline = time.time() + timeout
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.time()))
            assert ready, f"no output within {timeout} s"
            data = os.read(self.fd, 1 << 16)
            assert data, "the output ended"
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode() + "\n"


def test_standard_input_is_answered_line_by_line_before_it_closes(run):
    proc = minbert_process("predict", str(run), "--task", "sts", "-", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    out = PipeLines(proc.stdout)
    try:
        proc.stdin.write("A man sings.\tA man is singing.\n")
        proc.stdin.flush()
        assert out.read_line() == "id,prediction\n"
        first = out.read_line().strip().split(",")
        assert first[0] == "1" and 0 <= float(first[1]) <= 5  # answered while standard input is still open
        proc.stdin.write("not a pair\nA dog runs.\tA dog is running.\n")
        proc.stdin.flush()
        assert out.read_line().startswith("3,")
        assert proc.poll() is None
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
        err = proc.stderr.read()
        assert "<stdin>:2: expected 2 tab-separated field(s)" in err and "<stdin>: 3 rows, 2 kept, 1 skipped" in err
    finally:
        proc.kill()


@pytest.mark.parametrize("signum,ignored", [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
                         ids=["SIGINT", "SIGTERM", "SIGINT ignored at start"])
def test_a_signal_mid_file_leaves_no_output_and_no_traceback(run, small_data_dir, tmp_path, signum, ignored):
    """`ignored`: started as a shell starts a background job (SIGINT ignored); kill -INT still stops it, as it
    pauses training."""
    path = tmp_path / "big.txt"
    path.write_text("".join(f"{t}\n" for t in sentences(small_data_dir, 200_000)))
    out = tmp_path / "scored.csv"
    part = tmp_path / "scored.csv.part"
    proc = minbert_process("predict", str(run), "--task", "sst", "--input", "-", "--output", str(out),
                           "--chunk-size", "64", stdin=path.open(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignored else None)
    deadline = time.time() + 120
    while proc.poll() is None and not (part.exists() and part.stat().st_size > 1000) and time.time() < deadline:
        time.sleep(0.01)  # mid-file: some chunks written, most of the file still to come
    assert proc.poll() is None, "the process ended before it could be signalled"
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum
    assert stdout == "" and "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "minbert: interrupted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]


def test_a_reader_that_stops_early_ends_the_run_quietly(run, small_data_dir, tmp_path):
    path = tmp_path / "many.tsv"
    path.write_text("sentence\n" + "".join(f"{t}\n" for t in sentences(small_data_dir, 20_000)))
    proc = minbert_process("predict", str(run), "--task", "sst", "--input", str(path), "--chunk-size", "16",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert PipeLines(proc.stdout).read_line().startswith("id,prediction")
    proc.stdout.close()  # as `| head -1` does
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in proc.stderr.read()


def test_seen_ids_answer_as_a_set_of_strings_does():
    from minbert.data.readers import SeenIds
    rng = np.random.default_rng(0)
    seen, reference = SeenIds(), set()
    for ex_id in (str(v) for v in rng.integers(0, 50_000, 60_000)):  # about a third repeats
        assert (ex_id in seen) == (ex_id in reference)
        seen.add(ex_id)
        reference.add(ex_id)
    assert seen.count == len(reference) and len(seen.table) >= 2 * len(reference)


def test_reading_a_file_grows_by_a_few_bytes_a_row_not_by_its_rows(tmp_path):
    """tracemalloc's peak while streaming 20,000 and 200,000 rows with ids (the duplicate check's memory is all that
    may grow, its table doubling): under 50 bytes a row more, where a set of the id strings would take over 100."""
    import tracemalloc

    from minbert.data.inputs import open_inputs
    peaks = {}
    for n in (20_000, 200_000):
        path = tmp_path / f"{n}.csv"
        path.write_text("id,sentence\n" + "".join(f"row-{i},a short sentence {i % 97}\n" for i in range(n)))
        tracemalloc.start()
        rows = sum(1 for _ in open_inputs(path, ("sentence",)))
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert rows == n
    assert (peaks[200_000] - peaks[20_000]) / 180_000 < 50, peaks


"""`minbert predict` over files and standard input, the Predictor's outputs, `evaluate --out` and partial data
folders, checked against the trainer's own prediction files, direct model calls, Python's csv / json readers
and a real subprocess."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import minbert
from minbert.cli import main
from minbert.tasks import COURSE_TASKS

REPO = Path(__file__).resolve().parents[1]
QUICK = {"train.epochs": 1, "train.schedule.steps_per_epoch": 3, "train.batch_size": {"sst": 8, "para": 8, "sts": 8},
         "train.threads": 1}


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_backbone, small_data_dir) -> Path:
    """A cross-encoder run (pairs as one joint input)."""
    out = tmp_path_factory.mktemp("run-cross")
    minbert.train(out=out, data_dir=small_data_dir, **{"model.backbone": tiny_backbone, **QUICK})
    return out


@pytest.fixture(scope="module")
def siamese_run(tmp_path_factory, tiny_backbone, small_data_dir) -> Path:
    """A Siamese run (each sentence of a pair encoded on its own)."""
    out = tmp_path_factory.mktemp("run-siamese")
    minbert.train(out=out, data_dir=small_data_dir, **{"model.backbone": tiny_backbone,
                                                       "model.pair_encoding": "siamese",
                                                       "eval.test_predictions": False, **QUICK})
    return out


def course_predictions(path: Path) -> dict[str, str]:
    """A prediction file in the course's format: `id \\t header`, then `id , value` rows."""
    return dict(tuple(part.strip() for part in row.split(" , ")) for row in path.read_text().splitlines()[1:])


def dev_rows(data_dir: Path, task: str):
    examples, _ = COURSE_TASKS[task].read(data_dir, "dev")
    return examples


def write_inputs(folder: Path, task: str, examples) -> dict[str, Path]:
    """The same rows as CSV (comma, quoted by Python's csv), TSV and JSONL."""
    cols = COURSE_TASKS[task].text_columns
    paths = {fmt: folder / f"{task}.{fmt}" for fmt in ("csv", "tsv", "jsonl")}
    for fmt, delimiter in (("csv", ","), ("tsv", "\t")):
        with paths[fmt].open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter=delimiter)
            w.writerow(["id", *cols])
            w.writerows([[e.id, *e.texts] for e in examples])
    paths["jsonl"].write_text("".join(json.dumps({"id": e.id, **dict(zip(cols, e.texts))}) + "\n" for e in examples))
    return paths


def read_output(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("task", ["sst", "para", "sts"])
def test_file_predictions_equal_the_trainers_dev_predictions(run, small_data_dir, tmp_path, capsys, task):
    examples = dev_rows(small_data_dir, task)
    expected = course_predictions(run / "predictions" / f"{task}-dev-output.csv")  # the trainer's evaluation
    for fmt, path in write_inputs(tmp_path, task, examples).items():
        for suffix in (".csv", ".jsonl"):
            out = tmp_path / f"out-{fmt}{suffix}"
            assert main(["predict", str(run), "--task", task, "--input", str(path), "--output", str(out)]) == 0
            summary = json.loads(capsys.readouterr().out)
            assert summary == {"output": str(out), "task": task, "rows": len(examples), "skipped": 0, "input": str(path)}
            rows = read_output(out)
            assert [r["id"] for r in rows] == [e.id for e in examples]
            got = [COURSE_TASKS[task].format_value(float(r["prediction"])) for r in rows]
            assert got == [expected[e.id] for e in examples], (fmt, suffix)


def test_probabilities_agree_with_the_models_logits(run, small_data_dir):
    predictor = minbert.load(run)
    model, tok = predictor.model, predictor.tokenizer
    texts = [e.texts[0] for e in dev_rows(small_data_dir, "sst")]
    res = predictor.predict("sst", texts)
    assert res.probabilities.shape == (len(texts), 5)
    np.testing.assert_allclose(res.probabilities.sum(1), 1.0, atol=1e-5)
    pairs = [e.texts for e in dev_rows(small_data_dir, "para")]
    para = predictor.predict("para", pairs)
    with torch.inference_mode():  # one example at a time, unpadded, straight through the model
        logits = torch.stack([model("sst", [tok.pad(tok.encode([t]))])[0] for t in texts])
        para_logits = torch.stack([model("para", [tok.pad(tok.encode([a], [b]))])[0] for a, b in pairs])
    np.testing.assert_allclose(res.probabilities, torch.softmax(logits, -1).numpy(), atol=1e-5)
    assert list(res.predictions) == logits.argmax(-1).tolist()
    np.testing.assert_allclose(para.probabilities, torch.sigmoid(para_logits).numpy(), atol=1e-5)
    assert list(para.predictions) == (para_logits > 0).long().tolist()


def test_siamese_pairs_are_encoded_separately(siamese_run, small_data_dir, tmp_path, capsys):
    predictor = minbert.load(siamese_run)
    model, tok = predictor.model, predictor.tokenizer
    assert not model.joint_input("sts")
    examples = dev_rows(small_data_dir, "sts")
    res = predictor.predict("sts", [e.texts for e in examples])
    assert res.probabilities is None
    with torch.inference_mode():
        direct = [model("sts", [tok.pad(tok.encode([a])), tok.pad(tok.encode([b]))])[0].item() for a, b in
                  (e.texts for e in examples)]
    np.testing.assert_allclose(res.predictions, direct, atol=1e-5)
    expected = course_predictions(siamese_run / "predictions" / "sts-dev-output.csv")
    path = write_inputs(tmp_path, "sts", examples)["tsv"]
    assert main(["predict", str(siamese_run), "--task", "sts", "--input", str(path)]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert list(rows[0]) == ["id", "prediction"]
    assert {r["id"]: r["prediction"] for r in rows} == {e.id: expected[e.id] for e in examples}


def test_rows_without_an_id_are_numbered_by_line(run, tmp_path, capsys):
    path = tmp_path / "plain.csv"
    path.write_text('sentence,stars\n"Witty, warm and wise.",5\n\nDull.,1\n')
    assert main(["predict", str(run), "--task", "sst", "--input", str(path)]) == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(captured.out.splitlines()))
    assert [r["id"] for r in rows] == ["2", "4"]
    assert list(rows[0]) == ["id", "prediction", "prob_0", "prob_1", "prob_2", "prob_3", "prob_4"]
    assert "extra column(s) ['stars']" in captured.err


def test_output_onto_the_input_is_refused_and_no_partial_file_is_left(run, tmp_path, capsys):
    path = tmp_path / "mine.csv"
    path.write_text('sentence\n"Witty, warm and wise."\nDull.\n')
    before = path.read_bytes()
    same = tmp_path / "sub" / ".." / "mine.csv"  # the same file by another spelling
    assert main(["predict", str(run), "--task", "sst", "--input", str(path), "--output", str(same)]) == 2
    assert "is the --input file; write the predictions to another file" in capsys.readouterr().err
    assert path.read_bytes() == before
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(run), "--task", "sst", "--input", str(path), "--output", str(out)]) == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["2", "3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.csv", "out.jsonl"]  # no .part left


def test_bad_rows_are_counted_and_named(run, tmp_path, capsys):
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("id\tsentence1\tsentence2\na\tOne.\tTwo.\nb\t\tTwo.\nc\tOne.\nd\tOne.\tTwo.\n")
    out = tmp_path / "out.csv"
    assert main(["predict", str(run), "--task", "para", "--input", str(tsv), "--output", str(out)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["skipped"] == 2 and json.loads(captured.out)["rows"] == 2
    assert f"{tsv}: 4 rows, 2 kept, 2 skipped" in captured.err
    assert f"{tsv}:3: empty sentence1" in captured.err and f"{tsv}:4: expected 3 columns, found 2" in captured.err
    assert [r["id"] for r in read_output(out)] == ["a", "d"]

    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"id": 1, "sentence": "Fine."}\n{"id": 2, "text": "no key"}\nnot json\n[1, 2]\n'
                     '{"id": 1, "sentence": "again"}\n')
    assert main(["predict", str(run), "--task", "sst", "--input", str(jsonl), "--output", str(tmp_path / "o.jsonl")]) == 0
    err = capsys.readouterr().err
    for line, reason in ((2, "missing key(s) ['sentence']"), (3, "not valid JSON"), (4, "expected a JSON object"),
                         (5, "duplicate id '1'")):
        assert f"{jsonl}:{line}: {reason}" in err
    assert main(["predict", str(run), "--task", "para", "--input", str(tsv), "--strict"]) == 2
    assert capsys.readouterr().err.strip() == f"minbert: error: {tsv}:3: empty sentence1"
    empty = tmp_path / "empty.csv"
    empty.write_text("sentence\n\n")
    assert main(["predict", str(run), "--task", "sst", "--input", str(empty)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"minbert: error: {empty}: no usable rows")


def minbert_cli(*args: str, stdin: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "minbert", *args], input=stdin, capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=300)


def test_standard_input_in_a_real_process(run, small_data_dir, tmp_path):
    examples = dev_rows(small_data_dir, "para")[:6]
    lines = ["\t".join(e.texts) for e in examples]
    lines.insert(2, "a line without its pair")
    proc = minbert_cli("predict", str(run), "--task", "para", "-", stdin="\n".join(lines) + "\n")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(proc.stdout.splitlines()))  # the data rows are all there is on standard output
    assert rows[0] == ["id", "prediction", "probability"]
    assert [r[0] for r in rows[1:]] == ["1", "2", "4", "5", "6", "7"]
    expected = course_predictions(run / "predictions" / "para-dev-output.csv")
    assert [r[1] for r in rows[1:]] == [expected[e.id] for e in examples]
    assert "<stdin>:3: expected 2 tab-separated field(s)" in proc.stderr

    out = tmp_path / "para.jsonl"
    proc = minbert_cli("predict", str(run), "--task", "para", "--input", "-", "--output", str(out),
                       stdin="\n".join(lines[:2]) + "\n")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"output": str(out), "task": "para", "rows": 2, "skipped": 0, "input": "<stdin>"}
    records = read_output(out)
    assert [set(r) for r in records] == [{"id", "prediction", "probability"}] * 2
    assert [r["prediction"] for r in records] == [int(expected[e.id]) for e in examples[:2]]


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_evaluate_out_leaves_the_run_folder_as_it_was(run, small_data_dir, tmp_path, capsys):
    before = tree_digest(run)
    out = tmp_path / "eval"
    assert main(["evaluate", str(run), "--split", "test", "--out", str(out), "--data-dir", str(small_data_dir)]) == 0
    assert tree_digest(run) == before
    for task in ("sst", "para", "sts"):  # the same checkpoint writes the same submission files
        name = f"predictions/{task}-test-output.csv"
        assert (out / name).read_bytes() == (run / name).read_bytes()
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.loads((out / "test-metrics.json").read_text()) == result and result["metrics"] == {}

    assert main(["evaluate", str(run), "--out", str(out), "--data-dir", str(small_data_dir)]) == 0
    assert tree_digest(run) == before
    best = json.loads((run / "best_metrics.json").read_text())
    metrics = json.loads((out / "dev-metrics.json").read_text())["metrics"]
    assert metrics == pytest.approx({k: best[k] for k in ("sst", "para", "sts", "overall")}, abs=1e-6)


def test_a_partial_data_folder_evaluates_the_tasks_it_holds(run, small_data_dir, tmp_path, capsys):
    part = tmp_path / "part"
    part.mkdir()
    for name in ("ids-sst-dev.csv", "sts-dev.csv"):
        shutil.copy(small_data_dir / name, part / name)
    out = tmp_path / "eval"
    assert main(["evaluate", str(run), "--out", str(out), "--data-dir", str(part)]) == 0
    captured = capsys.readouterr()
    assert f"{part / 'quora-dev.csv'} not found: task para skipped" in captured.err
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["tasks"] == ["sst", "sts"] and set(result["metrics"]) == {"sst", "sts"}
    best = json.loads((run / "best_metrics.json").read_text())
    assert result["metrics"]["sst"] == pytest.approx(best["sst"], abs=1e-6)
    assert sorted(p.name for p in (out / "predictions").iterdir()) == ["sst-dev-output.csv", "sts-dev-output.csv"]
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    assert main(["evaluate", str(run), "--out", str(out), "--data-dir", str(nothing)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"minbert: error: {nothing}: none of the dev files")


def test_bench_compares_file_prediction_with_a_pipeline(tiny_backbone, small_data_dir, tmp_path):
    pytest.importorskip("transformers")
    from minbert.tools.bench import predict_file_rows
    (row,) = predict_file_rows(str(tiny_backbone), small_data_dir, tmp_path, reps=1, batch=8)
    assert row["rows"] == len(dev_rows(small_data_dir, "sst"))
    assert row["minbert rows/s"] > 0 and row["pipeline rows/s"] > 0 and row["ratio"] > 0

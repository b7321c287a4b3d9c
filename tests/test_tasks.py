"""Tasks as data: the course catalogue against the table it replaced, each field of a definition, each metric
against a closed form, each bad definition as a one-line error, and a user's own tasks through every command."""
from __future__ import annotations

import csv
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import re

import yaml

from minbert.cli import main
from minbert.errors import ConfigError
from minbert.metrics import METRICS
from minbert.schema import load_config
from minbert.tasks import get_task, overall_score

REPO = Path(__file__).resolve().parents[1]

# The task table as tasks.py declared it in code before tasks became data (git 92b57cd): name -> (files, text
# columns, label column, label range, head width, kind, metric, prediction header, title, column, class names).
OLD_TABLE = {
    "sst": ("ids-sst", ("sentence",), "sentiment", (0, 4), 5, "classify", "accuracy", "Predicted_Sentiment", "SST-5",
            "SST acc", ("0 neg", "1 some neg", "2 neutral", "3 some pos", "4 pos")),
    "para": ("quora", ("sentence1", "sentence2"), "is_duplicate", (0, 1), 1, "binary", "accuracy",
             "Predicted_Is_Paraphrase", "Quora paraphrase", "Para acc", ("0 different", "1 paraphrase")),
    "sts": ("sts", ("sentence1", "sentence2"), "similarity", (0.0, 5.0), 1, "regress", "pearson",
            "Predicted_Similiary", "STS", "STS r", ()),
    "cfimdb": ("ids-cfimdb", ("sentence",), "sentiment", (0, 1), 2, "classify", "accuracy", "Predicted_Sentiment",
               "CFIMDB", "CFIMDB acc", ("0 negative", "1 positive")),
}


@pytest.mark.parametrize("name", sorted(OLD_TABLE))
def test_the_course_catalogue_declares_what_the_code_did(name, tmp_path):
    prefix, text, label, (low, high), width, kind, metric, header, title, column, class_names = OLD_TABLE[name]
    task = get_task(name)
    assert (task.text_columns, task.label_column, task.num_outputs, task.kind.name, task.metric_name) == \
        (text, label, width, kind, metric)
    assert (task.prediction_header, task.title, task.column, task.class_names) == (header, title, column, class_names)
    for split, suffix in (("train", "train"), ("dev", "dev"), ("test", "test-student")):
        assert task.path(tmp_path, split) == tmp_path / f"{prefix}-{suffix}.csv"
    assert task.prediction_file("dev") == f"{name}-dev-output.csv"
    assert task.parse_label(str(high)) == (high if kind != "regress" else float(high))
    with pytest.raises(ValueError, match="out of range"):
        task.parse_label(str(high + 1))
    if kind == "regress":
        assert (task.kind.min_score, task.kind.max_score) == (low, high)


def test_metrics_against_closed_forms():
    rng = np.random.default_rng(0)
    gold, pred = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    tp, fp = np.sum((pred == 1) & (gold == 1)), np.sum((pred == 1) & (gold == 0))
    fn, tn = np.sum((pred == 0) & (gold == 1)), np.sum((pred == 0) & (gold == 0))
    assert METRICS["accuracy"].fn(pred, gold) == pytest.approx((tp + tn) / 200)
    assert METRICS["f1"].fn(pred, gold) == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert METRICS["mcc"].fn(pred, gold) == pytest.approx(
        (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
    g3, p3 = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    f1s = []
    for c in range(3):
        tp_c, fp_c, fn_c = np.sum((p3 == c) & (g3 == c)), np.sum((p3 == c) & (g3 != c)), np.sum((p3 != c) & (g3 == c))
        f1s.append(2 * tp_c / (2 * tp_c + fp_c + fn_c))
    assert METRICS["macro_f1"].fn(p3, g3) == pytest.approx(np.mean(f1s))
    x, y = rng.normal(size=100), rng.normal(size=100)
    assert METRICS["pearson"].fn(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731  (no ties in continuous draws)
    assert METRICS["spearman"].fn(x, y) == pytest.approx(np.corrcoef(rank(x), rank(y))[0, 1])
    assert METRICS["pearson"].fn(np.ones(5), y[:5]) == 0.0  # a constant prediction: no correlation


def test_overall_is_the_course_score_for_the_trio_else_the_mean_or_the_weighted_mean():
    m = {"sst": 0.5, "para": 0.8, "sts": 0.6, "mine": 0.3}
    assert overall_score(m, ["sst", "para", "sts"]) == pytest.approx((0.5 + 0.8 + 0.8) / 3)
    assert overall_score(m, ["sst", "para", "sts", "mine"]) == pytest.approx((0.5 + 0.8 + 0.6 + 0.3) / 4)
    assert overall_score(m, ["sst", "mine"], {"sst": 3.0, "mine": 1.0}) == pytest.approx((1.5 + 0.3) / 4)
    assert overall_score(m, ["sst"]) is None and overall_score(m, ["sst", "gone"]) is None


# ---- a user's own files, in formats the course never used ----

def write_user_data(folder: Path, n: int = 48) -> Path:
    """A three-class JSONL file (`body`, `polarity`: negative / neutral / positive, ids in `review_id`) and a CSV of
    pairs scored 0-1 (`left`, `right`, `sim`, no id column)."""
    rnd = random.Random(0)
    words = {"negative": ["awful", "dull", "bad"], "neutral": ["okay", "fine", "plain"],
             "positive": ["great", "lovely", "superb"]}
    sentences = ["a cat sits", "a dog runs", "rain falls", "kids play", "the sun sets"]
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", n), ("dev", n // 2), ("test", 10)):
        with (folder / f"reviews-{split}.jsonl").open("w") as f:
            for i in range(rows):
                lab = ["negative", "neutral", "positive"][i % 3]
                row = {"review_id": f"{split}-{i}", "body": f"it was {rnd.choice(words[lab])} and {rnd.choice(words[lab])}"}
                f.write(json.dumps({**row, **({"polarity": lab} if split != "test" else {})}) + "\n")
        with (folder / f"pairs-{split}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["left", "right", *(["sim"] if split != "test" else [])])
            for i in range(rows):
                a, b = rnd.choice(sentences), rnd.choice(sentences)
                w.writerow([a, b, *([f"{1.0 if a == b else rnd.random() * 0.4:.3f}"] if split != "test" else [])])
    return folder


REVIEWS = {"dir": ".", "files": {"train": "reviews-train.jsonl", "dev": "reviews-dev.jsonl",
                                 "test": "reviews-test.jsonl"},
           "id": "review_id", "text": "body", "label": "polarity", "kind": "classes",
           "classes": ["negative", "neutral", "positive"], "metrics": ["accuracy", "macro_f1"]}
PAIRS = {"dir": ".", "files": {"train": "pairs-train.csv", "dev": "pairs-dev.csv", "test": "pairs-test.csv"},
         "text": ["left", "right"], "label": "sim", "kind": "score", "range": [0, 1], "metrics": ["spearman", "pearson"]}


def user_config(folder: Path, backbone: Path, reviews: dict | None = None, pairs_file: bool = True, **extra) -> Path:
    """A config training SST with the two user tasks: reviews inline, pairs from a file the config names."""
    if pairs_file:
        (folder / "pairs.yaml").write_text(yaml.safe_dump(PAIRS))
    cfg = {"tasks": ["sst", "reviews", "pairs"],
           "task_defs": {"reviews": reviews or REVIEWS, "pairs": "pairs.yaml" if pairs_file else PAIRS},
           "model": {"backbone": str(backbone)},
           "train": {"epochs": 1, "schedule": {"name": "round_robin", "until": "fixed_steps", "steps_per_epoch": 4},
                     "batch_size": {"sst": 8, "reviews": 8, "pairs": 8}},
           **extra}
    path = folder / "mytasks.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_users_tasks_train_evaluate_predict_report_ensemble_from_yaml_alone(tmp_path, tiny_backbone, small_data_dir,
                                                                            capsys):
    mine = write_user_data(tmp_path / "mine")
    config = user_config(tmp_path / "mine", tiny_backbone)
    run = tmp_path / "run"
    code, out, err = run_cli(["train", "--config", str(config), "--data-dir", str(small_data_dir), "--out", str(run)],
                             capsys)
    assert code == 0, err
    best = json.loads(out.splitlines()[-1])["best_dev"]
    assert {"sst", "reviews", "reviews.macro_f1", "pairs", "pairs.pearson", "overall"} <= set(best)
    assert best["overall"] == pytest.approx((best["sst"] + best["reviews"] + best["pairs"]) / 3)

    # the prediction files: ids from the user's id column (reviews) or row numbers (pairs), labels as in the file
    with (run / "predictions" / "reviews-test-output.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [f"test-{i}" for i in range(10)]
    assert {r["prediction"] for r in rows} <= {"negative", "neutral", "positive"}
    with (run / "predictions" / "pairs-dev-output.csv").open() as f:
        pairs = list(csv.DictReader(f))
    assert [p["id"] for p in pairs] == [str(i) for i in range(2, 26)]  # the header is line 1
    assert all(0.0 <= float(p["prediction"]) <= 1.0 for p in pairs)
    # dev predictions score what the run reported
    gold = [json.loads(line)["polarity"] for line in (mine / "reviews-dev.jsonl").read_text().splitlines()]
    with (run / "predictions" / "reviews-dev-output.csv").open() as f:
        got = [r["prediction"] for r in csv.DictReader(f)]
    assert np.mean([g == p for g, p in zip(gold, got)]) == pytest.approx(best["reviews"])

    # the run keeps a copy of its definitions: predict and evaluate after the user's files are gone
    (mine / "mytasks.yaml").unlink()
    (mine / "pairs.yaml").unlink()
    saved = yaml.safe_load((run / "config.yaml").read_text())["task_defs"]
    assert saved["pairs"]["text"] == ["left", "right"] and saved["pairs"]["dir"] == str(mine.resolve())
    (tmp_path / "in.csv").write_text("review_id,body\nx1,it was lovely and great\nx2,it was dull\n")
    code, out, err = run_cli(["predict", str(run), "--task", "reviews", "--input", str(tmp_path / "in.csv")], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "id,prediction,prob_negative,prob_neutral,prob_positive" and lines[1].startswith("x1,")
    import minbert
    api = minbert.load(run).predict("reviews", ["it was lovely and great", "it was dull"])
    assert set(api.formatted()) <= {"negative", "neutral", "positive"} and api.probabilities.shape == (2, 3)
    code, out, err = run_cli(["predict", str(run), "--task", "pairs", "a cat sits", "a dog runs"], capsys)
    assert code == 0 and 0.0 <= float(json.loads(out)["prediction"]) <= 1.0
    code, out, err = run_cli(["evaluate", str(run), "--split", "dev", "--data-dir", str(small_data_dir),
                              "--out", str(tmp_path / "ev")], capsys)
    assert code == 0, err
    assert json.loads(out)["metrics"]["reviews"] == pytest.approx(best["reviews"])
    code, out, err = run_cli(["report", str(run), "--data-dir", str(small_data_dir)], capsys)
    assert code == 0, err
    assert (run / "report" / "confusion_reviews.png").is_file() and (run / "report" / "pairs_scatter.png").is_file()
    assert "| reviews | macro_f1 |" in (run / "report" / "REPORT.md").read_text()
    code, out, err = run_cli(["ensemble", str(run), str(run), "--out", str(tmp_path / "ens"),
                              "--data-dir", str(small_data_dir)], capsys)
    assert code == 0, err
    assert json.loads(out)["dev"]["reviews"] == pytest.approx(best["reviews"])
    assert (tmp_path / "ens" / "predictions" / "reviews-test-output.csv").read_text() == \
        (run / "predictions" / "reviews-test-output.csv").read_text()
    code, out, err = run_cli(["export", str(run), "--out", str(tmp_path / "exp")], capsys)
    assert code == 0, err


def test_classes_not_declared_are_read_from_the_training_split_and_logged(tmp_path, tiny_backbone, small_data_dir,
                                                                         capsys):
    write_user_data(tmp_path / "mine")
    reviews = {k: v for k, v in REVIEWS.items() if k != "classes"}
    config = user_config(tmp_path / "mine", tiny_backbone, reviews=reviews)
    code, out, err = run_cli(["train", "--config", str(config), "--data-dir", str(small_data_dir), "--check"], capsys)
    assert code == 0, err
    assert json.loads(out)["classes_read"] == [
        f"task reviews: classes read from {(tmp_path / 'mine' / 'reviews-train.jsonl').resolve()}: "
        "['negative', 'neutral', 'positive'] (declare task_defs.reviews.classes to set them and their order)"]


# ---- each bad definition: one line, before any run folder exists ----

def bad_definition_cases():
    r = REVIEWS
    return {
        "unknown key": ({**r, "colour": "red"}, r"unknown key task_defs.reviews.colour"),
        "unknown kind": ({**r, "kind": "ordinal"}, r"task_defs.reviews.kind: 'ordinal' is not one of"),
        "no kind": ({**r, "kind": None}, r"task_defs.reviews.kind: missing: a task needs"),
        "metric that does not fit the kind": ({**r, "metrics": ["pearson"]},
                                              r"task_defs.reviews.metrics: metric pearson does not fit a task of kind "
                                              r"classify"),
        "f1 of three classes": ({**r, "metrics": ["f1"]}, r"metric f1 needs two classes"),
        "three text columns": ({**r, "text": ["a", "b", "c"]}, r"task_defs.reviews.text: name one text column or the "
                                                               r"two of a pair, got 3"),
        "a pair of one column twice": ({**r, "text": ["body", "body"]}, r"a pair's two columns must differ"),
        "a score without a range": ({**r, "kind": "score", "classes": None}, r"a score needs range"),
        "binary with three classes": ({**r, "kind": "binary"}, r"a binary task has two classes"),
        "no dev file": ({**r, "files": {"train": "reviews-train.jsonl"}}, r"task_defs.reviews.files: needs a dev split"),
        "a class twice": ({**r, "classes": ["a", "b", "a"]}, r"a class is listed twice"),
        "a catalogue name": ("sst", r"task_defs.sst: 'sst' is a catalogue task's name"),
        "a bad name": ("Bad Name", r"task_defs.Bad Name: a task's name is lower-case"),
        "missing file": ({**r, "files": {**r["files"], "dev": "nowhere.jsonl"}}, r"nowhere.jsonl: file not found"),
        "missing column": ({**r, "text": "review"}, r"reviews-train.jsonl:1: missing key\(s\) \['review'\]"),
        "missing definition file": ("file", r"task_defs.reviews: task definition file not found"),
        "unknown format": ({**r, "files": {**r["files"], "train": "reviews.txt"}},
                           r"reviews.txt: cannot tell the format from the extension '.txt'"),
        "a split that is not one": ({**r, "files": {**r["files"], "tst": "reviews-test.jsonl"}},
                                    r"task_defs.reviews.files: \['tst'\] not among the splits"),
        "a pair task given one column": ({**r, "pair": True}, r"a pair task takes two text columns, got \['body'\]"),
        "unquoted yes / no classes": ({**r, "classes": [False, True]}, r"holds YAML booleans"),
        "a reserved name": ("overall", r"task_defs.overall: 'overall' names a field of minbert's result records"),
        "a datasets source without dev": ({k: v for k, v in r.items() if k != "files"} |
                                          {"datasets": {"path": "x", "splits": {"train": "train"}}},
                                          r"task_defs.reviews.datasets.splits: needs a dev split"),
    }


@pytest.mark.parametrize("case", list(bad_definition_cases()))  # the list, and what review found
def test_a_bad_definition_is_one_line_before_anything_is_written(case, tmp_path, tiny_backbone, small_data_dir,
                                                                 capsys):
    mine = write_user_data(tmp_path / "mine")
    (mine / "reviews.txt").write_text("x\n")
    definition, message = bad_definition_cases()[case]
    config = user_config(mine, tiny_backbone)
    raw = yaml.safe_load(config.read_text())
    if definition in ("sst", "Bad Name", "overall"):
        raw["task_defs"][definition] = raw["task_defs"].pop("reviews")
        raw["tasks"] = ["sst", definition, "pairs"] if definition != "sst" else ["sst", "pairs"]
        del raw["train"]["batch_size"]["reviews"]
    elif definition == "file":
        raw["task_defs"]["reviews"] = "no-such-definition.yaml"
    else:
        raw["task_defs"]["reviews"] = {k: v for k, v in definition.items() if v is not None}
    config.write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    code, out, err = run_cli(["train", "--config", str(config), "--data-dir", str(small_data_dir), "--out", str(run)],
                             capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("minbert: error: "), err
    assert re.search(message, err), err
    assert not run.exists()


def test_a_run_whose_classes_were_read_resumes_with_its_config_and_ensembles_only_alike_runs(
        tmp_path, tiny_backbone, small_data_dir, capsys):
    mine = write_user_data(tmp_path / "mine")
    config = user_config(mine, tiny_backbone, reviews={k: v for k, v in REVIEWS.items() if k != "classes"})
    run = tmp_path / "run"
    code, out, err = run_cli(["train", "--config", str(config), "--data-dir", str(small_data_dir), "--out", str(run),
                              "--set", "train.epochs=2"], capsys)
    assert code == 0, err
    assert "task reviews: classes ['negative', 'neutral', 'positive'], read from" in (run / "log.txt").read_text()
    code, out, err = run_cli(["train", "--resume", str(run), "--config", str(config), "--set", "train.epochs=2"],
                             capsys)
    assert code == 0, err  # the config file, which leaves the classes to the data, resumes the run that read them
    other = tmp_path / "other"
    code, out, err = run_cli(["train", "--config", str(config), "--data-dir", str(small_data_dir), "--out", str(other),
                              "--set", "task_defs.reviews.classes=[positive, neutral, negative]"], capsys)
    assert code == 0, err
    code, out, err = run_cli(["ensemble", str(run), str(other), "--out", str(tmp_path / "ens"), "--data-dir",
                              str(small_data_dir)], capsys)
    assert code == 2 and "task reviews is not the first run's (its classes: ['positive', 'neutral', " in err


def test_json_booleans_are_labels(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"text": "buy now", "spam": true}\n{"text": "hi mum", "spam": false}\n')
    task = spec_task(tmp_path, dir=str(tmp_path), files={"train": "t.jsonl", "dev": "t.jsonl"}, text="text",
                     label="spam", kind="binary", classes=["false", "true"])
    rows, report = task.read(tmp_path, "train")
    assert [r.label for r in rows] == [1, 0] and report.skipped == 0


def test_bad_rows_of_a_users_file_are_counted_skips_or_errors_when_strict(tmp_path, tiny_backbone, small_data_dir,
                                                                        capsys):
    mine = write_user_data(tmp_path / "mine")
    with (mine / "reviews-train.jsonl").open("a") as f:
        f.write(json.dumps({"review_id": "odd", "body": "so so", "polarity": "mixed"}) + "\n")
        f.write("not json\n")
    with (mine / "pairs-train.csv").open("a") as f:
        f.write("a cat sits,a dog runs,1.5\n")
    config = user_config(mine, tiny_backbone)
    code, out, err = run_cli(["train", "--config", str(config), "--data-dir", str(small_data_dir),
                              "--out", str(tmp_path / "run")], capsys)
    assert code == 0, err
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "reviews-train.jsonl: 50 rows, 48 kept, 2 skipped" in log
    assert ("reviews-train.jsonl:49: polarity 'mixed': not a declared class "
            "(expected one of ['negative', 'neutral', 'positive'])") in log
    assert "reviews-train.jsonl:50: not valid JSON" in log
    assert "pairs-train.csv:50: sim '1.5': out of range (expected 0.0-1.0)" in log
    code, out, err = run_cli(["train", "--config", str(config), "--data-dir", str(small_data_dir),
                              "--out", str(tmp_path / "strict"), "--set", "data.strict=true"], capsys)
    last = err.splitlines()[-1]
    assert code == 2 and last.startswith("minbert: error: ") and "polarity 'mixed': not a declared class" in last
    assert "Traceback" not in err and not (tmp_path / "strict").exists()


def test_an_empty_split_is_an_error(tmp_path, tiny_backbone, small_data_dir, capsys):
    mine = write_user_data(tmp_path / "mine")
    (mine / "pairs-dev.csv").write_text("left,right,sim\n")
    config = user_config(mine, tiny_backbone)
    code, out, err = run_cli(["train", "--config", str(config), "--data-dir", str(small_data_dir),
                              "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and err.strip().endswith("pairs-dev.csv: no usable rows"), err


def test_two_tasks_of_one_name_are_refused(tmp_path):
    (tmp_path / "c.yaml").write_text("tasks: [sst, mine]\ntask_defs:\n"
                                     "  mine: {text: a, label: b, kind: binary, files: {train: t, dev: d}}\n"
                                     "  mine: {text: a, label: b, kind: binary, files: {train: t, dev: d}}\n")
    with pytest.raises(ConfigError, match=r"c.yaml:4: not valid YAML \(duplicate key 'mine' \(first given on line 3\)\)"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match=r"tasks: 'sst' is listed twice"):
        load_config(None, ["tasks=[sst, sst]"])


# ---- the fields one by one, on small files ----

def spec_task(tmp_path: Path, **fields):
    """The task `mine` of a config declaring it with these fields."""
    cfg = load_config(None, values={"tasks": ["mine"], "task_defs": {"mine": fields}})
    return cfg.task("mine")


def test_layout_fields_tsv_headerless_quoting_and_ids(tmp_path):
    (tmp_path / "train.tsv").write_text('1\tx\t"an opening quote only\n0\ty\tplain text\n')
    (tmp_path / "dev.tsv").write_text('index\tlabel\tsentence\n7\t1\t"quoted"\n9\t0\tfine\n')
    task = spec_task(tmp_path, dir=str(tmp_path), files={"train": "train.tsv", "dev": "dev.tsv"}, headerless=["train"],
                     columns=["label", "mark", "sentence"], quoting="none", id="index", text="sentence", label="label",
                     kind="binary", classes=[0, 1])
    train, report = task.read(tmp_path, "train")
    assert [(e.id, e.texts, e.label) for e in train] == [("1", ('"an opening quote only',), 1), ("2", ("plain text",), 0)]
    assert "no index column: rows are numbered by their line" in report.notes
    dev, _ = task.read(tmp_path, "dev")
    assert [(e.id, e.texts) for e in dev] == [("7", ('"quoted"',)), ("9", ("fine",))]  # quotes are text
    csv_task = spec_task(tmp_path, dir=str(tmp_path), files={"train": "dev.tsv", "dev": "dev.tsv"}, format="tsv",
                         id="index", text="sentence", label="label", kind="binary", classes=[0, 1])
    assert [e.texts for e in csv_task.read(tmp_path, "train")[0]] == [("quoted",), ("fine",)]  # csv quoting


def test_files_are_found_in_dir_or_the_data_directory(tmp_path):
    fields = {"files": {"train": "t.csv", "dev": "d.csv"}, "text": "s", "label": "y", "kind": "score",
              "range": [-1, 1]}
    assert spec_task(tmp_path, **fields).path(tmp_path / "data", "dev") == tmp_path / "data" / "d.csv"
    assert spec_task(tmp_path, dir=str(tmp_path / "x"), **fields).path(tmp_path / "data", "dev") == tmp_path / "x" / "d.csv"
    task = spec_task(tmp_path, **fields)
    assert (task.kind.min_score, task.kind.max_score) == (-1, 1) and task.metric_name == "pearson"


def test_prediction_fields(tmp_path):
    from minbert.evaluate import prediction_lines

    task = spec_task(tmp_path, files={"train": "t.tsv", "dev": "d.tsv"}, text=["a", "b"], label="y", kind="classes",
                     classes=["entailment", "not_entailment"], prediction_format="tsv", prediction_id="index",
                     prediction_header="prediction", prediction_files={"test": "RTE.tsv"}, title="RTE",
                     class_names=["yes", "no"])
    assert prediction_lines(task, ["0", "1"], np.array([1, 0])) == ["index\tprediction\n", "0\tnot_entailment\n",
                                                                    "1\tentailment\n"]
    assert task.prediction_file("test") == "RTE.tsv" and task.prediction_file("dev") == "mine-dev-output.csv"
    assert task.class_names == ("yes", "no") and task.column == "RTE acc"
    score = spec_task(tmp_path, files={"train": "t.tsv", "dev": "d.tsv"}, text="a", label="y", kind="score",
                      range=[0, 5], prediction_decimals=3, prediction_format="course",
                      prediction_header="Predicted_Score")
    assert prediction_lines(score, ["a"], np.array([1.23456])) == ["id \t Predicted_Score \n", "a , 1.235 \n"]


def test_numeric_classes_match_by_value_and_other_labels_by_text(tmp_path):
    stars = spec_task(tmp_path, files={"train": "t", "dev": "d"}, text="a", label="y", kind="classes",
                      classes=[1, 2, 3, 4, 5])
    assert [stars.parse_label(v) for v in ("1", "3.0", "5")] == [0, 2, 4] and stars.format_value(2) == "3"
    with pytest.raises(ValueError, match="not a declared class"):
        stars.parse_label("6")


# ---- GLUE: the official layout (tests/data/glue: invented rows in the real files' layout) ----

GLUE = REPO / "tests" / "data" / "glue"
GLUE_ROWS = {"cola": (8, 6, 6), "sst-2": (8, 6, 6), "mrpc": (7, 6, 6), "sts-b": (8, 6, 6), "qqp": (7, 6, 6),
             "mnli": (7, 6, 6), "mnli-mm": (7, 6, 6), "qnli": (6, 6, 6), "rte": (6, 6, 6), "wnli": (6, 6, 6)}


@pytest.mark.parametrize("name", sorted(GLUE_ROWS))
def test_each_glue_task_reads_the_official_layout(name):
    task = get_task(f"glue/{name}")
    for split, n in zip(("train", "dev", "test"), GLUE_ROWS[name]):
        task.check_file(GLUE, split)
        rows, report = task.read(GLUE, split, strict=name != "qqp" or split != "train")
        assert len(rows) == n, (split, report.summary())
        assert all(all(t for t in r.texts) for r in rows)
        assert all((r.label is None) == (split == "test") for r in rows)
    if name in ("rte", "mrpc"):  # a field that opens a quote and never closes it is read as text
        texts = [t for r in task.read(GLUE, "train")[0] for t in r.texts]
        assert any(t.startswith('"') for t in texts)


def test_glue_quirks_headerless_cola_the_mrpc_bom_and_a_broken_qqp_row():
    cola = get_task("glue/cola").read(GLUE, "train")[0]
    assert cola[1].label == 0 and cola[0].texts[0].startswith("The kettle whistled")
    assert get_task("glue/cola").read(GLUE, "test")[0][0].id == "0"  # the test file's index column
    rows, report = get_task("glue/mrpc").read(GLUE, "train")  # the BOM is not part of the first column's name
    assert rows[0].label == 1 and "no index column: rows are numbered by their line" in report.notes
    rows, report = get_task("glue/qqp").read(GLUE, "train")
    assert [str(b) for b in report.bad] == [f"{GLUE / 'QQP' / 'train.tsv'}:8: empty question2"]
    mnli = get_task("glue/mnli").read(GLUE, "dev")[0]
    assert {r.label for r in mnli} == {0, 1, 2}


def test_glue_runs_write_the_submission_files(tmp_path, tiny_backbone, capsys):
    run = tmp_path / "glue"
    code, out, err = run_cli(["train", "--data-dir", str(GLUE), "--out", str(run), "--set", f"model.backbone={tiny_backbone}",
                              "--set", "tasks=[glue/rte, glue/sts-b, glue/cola, glue/mrpc]", "--set", "train.epochs=1",
                              "--set", "train.schedule.steps_per_epoch=2"], capsys)
    assert code == 0, err
    best = json.loads(out.splitlines()[-1])["best_dev"]
    assert {"glue/rte", "glue/sts-b", "glue/sts-b.spearman", "glue/cola", "glue/cola.accuracy", "glue/mrpc",
            "glue/mrpc.accuracy", "overall"} <= set(best)
    assert best["overall"] == pytest.approx(np.mean([best[t] for t in ("glue/rte", "glue/sts-b", "glue/cola", "glue/mrpc")]))
    for file, values in (("RTE.tsv", {"entailment", "not_entailment"}), ("CoLA.tsv", {"0", "1"}),
                         ("MRPC.tsv", {"0", "1"})):
        lines = (run / "predictions" / file).read_text().splitlines()
        assert lines[0] == "index\tprediction" and [x.split("\t")[0] for x in lines[1:]] == [str(i) for i in range(6)]
        assert {x.split("\t")[1] for x in lines[1:]} <= values
    sts = (run / "predictions" / "STS-B.tsv").read_text().splitlines()
    assert all(len(x.split("\t")[1].split(".")[1]) == 3 for x in sts[1:])
    assert (run / "predictions" / "glue-rte-dev-output.csv").is_file()


# ---- Hugging Face datasets, offline ----

def test_a_datasets_source_saved_to_disk_trains_offline(tmp_path, tiny_backbone, small_data_dir, capsys):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["entailment", "not_entailment"])})
    rows = lambda n: {"premise": [f"a man walks {i}" for i in range(n)],  # noqa: E731
                      "hypothesis": [f"someone moves {i}" for i in range(n)], "label": [i % 2 for i in range(n)]}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows(24), features=features),
                          "validation": datasets.Dataset.from_dict(rows(10), features=features)}
                         ).save_to_disk(str(tmp_path / "nli"))
    definition = {"datasets": {"path": str(tmp_path / "nli"), "splits": {"train": "train", "dev": "validation"}},
                  "text": ["premise", "hypothesis"], "label": "label", "kind": "classes",
                  "classes": ["entailment", "not_entailment"]}
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "minbert", "train", "--data-dir", str(small_data_dir), "--out",
                           str(tmp_path / "run"), "--set", f"model.backbone={tiny_backbone}", "--set", "tasks=[sst, nli]",
                           "--set", "task_defs=" + json.dumps({"nli": definition}), "--set", "train.epochs=1",
                           "--set", "train.schedule.steps_per_epoch=2"], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "nli[train]: 24 rows, 24 kept, 0 skipped" in proc.stderr
    got = (tmp_path / "run" / "predictions" / "nli-dev-output.csv").read_text().splitlines()
    assert got[0] == "id,prediction" and len(got) == 11
    assert {x.split(",")[1] for x in got[1:]} <= {"entailment", "not_entailment"}


# ---- what was there before still loads ----

def test_the_shipped_example_of_own_tasks_checks(capsys):
    code, out, err = run_cli(["train", "--config", str(REPO / "configs" / "examples" / "own-tasks.yaml"), "--check"],
                             capsys)
    assert code == 0, err
    assert json.loads(out)["tasks"] == ["sst", "reviews", "pairs"]


def test_every_saved_run_config_and_shipped_config_still_loads():
    from minbert.runs import load_run_config

    saved = sorted(REPO.glob("results/**/config.yaml"))
    assert len(saved) > 50
    for path in saved:
        cfg = load_run_config(path)
        assert all(cfg.task(t).name == t for t in cfg.tasks)
    configs = [p for p in REPO.glob("configs/**/*.yaml")
               if p.parent.name not in ("ablations", "sweeps", "recipes", "own-tasks")]
    assert len(configs) > 10
    for path in configs:
        load_config(path)


# ---- every technique runs on a user's tasks ----

def technique_cases() -> dict[str, list[str]]:
    from minbert.combine import COMBINERS
    from minbert.schedules import SCHEDULES

    cases = {f"schedule {s}": [f"train.schedule.name={s}"] for s in SCHEDULES}
    cases.update({f"combine {c}": [f"train.combine.name={c}"] for c in COMBINERS})
    cases.update({
        "smart": ["train.smart.lambda_s=1.0"],
        "siamese cosine pairs, cosent": ["model.heads.pairs={pair_encoding: siamese, similarity: cosine, loss: cosent}"],
        "cnn, mlp, cls pooling, private layer": ["model.cnn_kernel=3", "model.mlp_layers=1", "model.pooling=cls",
                                                 "model.heads.reviews.private_layers=1"],
        "ordinal loss on reviews": ["model.heads.reviews.loss=ce_emd"],
        "weighted overall": ["eval.weights={sst: 1, reviews: 2, pairs: 1}"],
        "staged freezing, ema": ["train.freeze_stages=[{epochs: 1, train: heads}, {epochs: 1, train: all}]",
                                 "train.epochs=2", "train.ema=0.9"],
    })
    return cases


@pytest.mark.parametrize("case", list(technique_cases()))
def test_every_technique_trains_on_a_users_tasks(case, tmp_path, tiny_backbone, small_data_dir, capsys):
    mine = write_user_data(tmp_path / "mine", n=24)
    config = user_config(mine, tiny_backbone)
    sets = [x for s in technique_cases()[case] for x in ("--set", s)]
    code, out, err = run_cli(["train", "--config", str(config), "--data-dir", str(small_data_dir),
                              "--out", str(tmp_path / "run"), "--set", "eval.test_predictions=false", *sets], capsys)
    assert code == 0, err
    best = json.loads(out.splitlines()[-1])["best_dev"]
    assert {"sst", "reviews", "pairs", "overall"} <= set(best)
    if case == "weighted overall":
        assert best["overall"] == pytest.approx((best["sst"] + 2 * best["reviews"] + best["pairs"]) / 4)


def test_a_users_task_distils_from_a_teacher_and_ablates(tmp_path, tiny_backbone, small_data_dir, capsys):
    mine = write_user_data(tmp_path / "mine", n=24)
    config = user_config(mine, tiny_backbone)
    teacher = tmp_path / "teacher"
    code, out, err = run_cli(["train", "--config", str(config), "--data-dir", str(small_data_dir), "--out", str(teacher),
                              "--set", "tasks=[reviews]", "--set", "eval.test_predictions=false"], capsys)
    assert code == 0, err
    code, out, err = run_cli(["train", "--config", str(config), "--data-dir", str(small_data_dir),
                              "--out", str(tmp_path / "student"), "--set", "eval.test_predictions=false",
                              "--set", f"train.distill.teachers={{reviews: [{teacher}]}}"], capsys)
    assert code == 0, err
    # the student learned from the teacher's outputs on its reviews rows: the teacher's own predictions of them
    import minbert
    from safetensors.torch import load_file
    texts = [json.loads(line)["body"] for line in (mine / "reviews-train.jsonl").read_text().splitlines()]
    taught = load_file(str(tmp_path / "student" / "teacher_outputs.safetensors"))["reviews.outputs"]
    expected = minbert.load(teacher).predict("reviews", texts).outputs
    assert taught.shape == (1, 24, 3) and np.allclose(taught[0].numpy(), expected, atol=1e-5)
    ablation = tmp_path / "ablation.yaml"
    ablation.write_text(yaml.safe_dump({"title": "own tasks", "base": str(config), "seeds": [1],
                                        "set": {"eval.test_predictions": False},
                                        "variants": {"base": {}, "pcgrad": {"train.combine.name": "pcgrad"}}}))
    code, out, err = run_cli(["ablate", str(ablation), "--out", str(tmp_path / "abl"), "--data-dir",
                              str(small_data_dir)], capsys)
    assert code == 0, err
    table = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| variant | SST acc | reviews | pairs | overall |" in table

"""The Python API (`minbert.train`, `minbert.load`), `minbert --version`, and the documented notebook example,
checked against the run's own files, a transformers BertModel on the saved weights, and a real subprocess."""
from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minbert
from minbert.config import ConfigError

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "guide" / "predict-and-python.md"


@pytest.fixture(scope="module")
def api_run(tmp_path_factory, tiny_backbone, small_data_dir):
    out = tmp_path_factory.mktemp("api-run")
    metrics = minbert.train(out=out, data_dir=small_data_dir, **{
        "model.backbone": tiny_backbone,  # a Path: Python values, not only strings
        "train.epochs": 2, "train.schedule.steps_per_epoch": 2, "train.threads": 1,
        "train.batch_size": {"sst": 8, "para": 8, "sts": 8}, "eval.test_predictions": False})
    return out, metrics


def test_train_returns_the_runs_best_metrics(api_run):
    out, metrics = api_run
    assert metrics == json.loads((out / "best_metrics.json").read_text())
    assert {"sst", "para", "sts", "overall"} <= set(metrics)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2  # the override reached the config
    assert "batch_size:\n    sst: 8" in (out / "config.yaml").read_text()


def test_a_second_train_into_a_run_needs_overwrite(tmp_path, tiny_backbone, small_data_dir):
    from minbert.run_folder import RunFolderError

    out = tmp_path / "run"
    quick = {"model.backbone": tiny_backbone, "train.epochs": 1, "train.schedule.steps_per_epoch": 1, "train.threads": 1,
             "train.batch_size": {"sst": 8, "para": 8, "sts": 8}, "eval.test_predictions": False}
    minbert.train(out=out, data_dir=small_data_dir, **quick)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}
    with pytest.raises(RunFolderError, match="--overwrite"):
        minbert.train(out=out, data_dir=small_data_dir, **{**quick, "train.epochs": 2})
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"} == before
    minbert.train(out=out, data_dir=small_data_dir, overwrite=True, **{**quick, "train.epochs": 2})
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_overrides_are_checked_like_set(tmp_path):
    with pytest.raises(ConfigError, match="unknown key train.epoch "):
        minbert.train(out=tmp_path / "x", **{"train.epoch": 1})
    with pytest.raises(ConfigError, match="train.epochs: expected int"):
        minbert.train(out=tmp_path / "x", **{"train.epochs": "one"})


def test_load_predicts_and_encodes(api_run, small_data_dir):
    transformers = pytest.importorskip("transformers")
    import torch
    out, _ = api_run
    predictor = minbert.load(out)
    texts = ["A gorgeous, witty film.", "Dull.", "It is neither good nor bad, and it goes on and on and on."]
    sst = predictor.predict("sst", texts)
    assert sst.predictions.shape == (3,) and sst.probabilities.shape == (3, 5)
    assert sst.predictions.tolist() == sst.probabilities.argmax(1).tolist()
    para = predictor.predict("para", [("How do I cook rice?", "What is the way to cook rice?"), ("A", "B")])
    assert para.probabilities.shape == (2,) and set(para.predictions.tolist()) <= {0, 1}
    sts = predictor.predict("sts", [("A man plays.", "A man plays.")])
    assert sts.probabilities is None and 0 <= sts.predictions[0] <= 5
    with pytest.raises(ConfigError, match="takes a pair of texts per item; item 1"):
        predictor.predict("sts", ["not a pair"])

    vectors = predictor.encode(texts)
    hf = transformers.BertModel.from_pretrained(str(out / "best"), add_pooling_layer=False).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(out / "best"))
    x = tok(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():  # mean pooling by hand over the real tokens (the run's heads pool by mean)
        hidden = hf(**x).last_hidden_state
    mask = x["attention_mask"].unsqueeze(-1).float()
    expected = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    assert vectors.shape == (3, 32)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert predictor.encode([]).shape == (0, 32)


def test_submodules_never_replace_train_and_load():
    for info in pkgutil.walk_packages(minbert.__path__, "minbert."):
        if info.name != "minbert.__main__":
            importlib.import_module(info.name)
    from minbert.api import load, train
    assert minbert.train is train and minbert.load is load
    assert callable(minbert.train) and callable(minbert.load)


def test_version_comes_from_one_place():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "minbert", "--version"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout == f"minbert {minbert.__version__}\n"
    assert importlib.metadata.version("minbert") == minbert.__version__  # installed metadata reads the same
    assert 'version = {attr = "minbert.__version__"}' in (REPO / "pyproject.toml").read_text()


def python_example(path: Path) -> str | None:
    """The first ```python block of the `## Python` section, or None when the file has no such section."""
    text = path.read_text()
    section = re.search(r"^## Python\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if section is None:
        return None
    block = re.search(r"^```python\n(.*?)^```", section.group(1), re.S | re.M)
    return block.group(1) if block else None


def example_sources() -> list[Path]:
    readme = REPO / "README.md"
    return [GUIDE] + ([readme] if readme.is_file() and python_example(readme) is not None else [])


@pytest.mark.parametrize("doc", example_sources(), ids=lambda p: p.name)
def test_the_documented_example_runs(doc, small_data_dir, tmp_path):
    code = python_example(doc)
    assert code is not None and len(code.strip().splitlines()) <= 10
    env = {**os.environ, "MINBERT_DATA_DIR": str(small_data_dir), "OMP_NUM_THREADS": "1",  # 2 shared cores
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = json.loads(next(tmp_path.glob("runs/*/best_metrics.json")).read_text())
    assert f"{best['overall']}" in proc.stdout  # the example prints the metrics minbert.train returned

"""Typed YAML configs: unknown keys, wrong types and bad values name the key."""
from pathlib import Path

import pytest

from minbert.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    assert cfg.tasks and all(t in cfg.train.batch_size for t in cfg.tasks)


def test_overrides_are_typed():
    cfg = load_config(None, ["train.lr=3e-5", "train.batch_size.sst=8", "model.pooling=cls", "tasks=[sst]"])
    assert cfg.train.lr == 3e-5 and isinstance(cfg.train.lr, float)
    assert cfg.train.batch_size["sst"] == 8 and cfg.train.batch_size["para"] == 32
    assert cfg.model.pooling == "cls" and cfg.tasks == ["sst"]


@pytest.mark.parametrize("override,message", [
    (["train.lrr=1"], "unknown key train.lrr"),
    (["bogus=1"], "unknown key bogus"),
    (["train.lr=fast"], "train.lr: expected float"),
    (["train.epochs=2.5"], "train.epochs: expected int"),
    (["train.batch_size.sst=-4"], "train.batch_size.sst: must be positive"),
    (["model.pooling=median"], "model.pooling: 'median' is not one of"),
    (["model.dropout=1.5"], "model.dropout: must be in"),
    (["tasks=[sst, nli]"], "tasks: unknown task 'nli'"),
    (["train.schedule.name=chaos"], "train.schedule.name: 'chaos' is not one of"),
    (["train.lr"], "expected key=value"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, override)


def test_yaml_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key train.epochz"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml")


def test_train_fraction_is_a_share_and_excludes_train_limit():
    assert load_config(None, ["data.train_fraction=0.05"]).data.train_fraction == 0.05
    with pytest.raises(ConfigError, match="must be in \\(0, 1\\]"):
        load_config(None, ["data.train_fraction=1.5"])
    with pytest.raises(ConfigError, match="not both"):
        load_config(None, ["data.train_fraction=0.5", "data.train_limit=10"])

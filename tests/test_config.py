"""Typed YAML configs: unknown keys, wrong types and bad values name the key."""
import typing
from pathlib import Path

import pytest

from minbert import config
from minbert.config import ConfigError, load_config
from minbert.tasks import TASKS

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
    (["tasks=[sst, nli]"], r"tasks\[1\]: 'nli' is not one of"),
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


def test_each_literal_equals_its_registry():
    """config.py imports no component: its choices are Literals, which must list exactly the registries' names."""
    import typing

    from minbert import config
    from minbert.combine import COMBINERS
    from minbert.heads import COSINE_SCALES, PAIR_ENCODINGS, PAIR_FEATURES, POOLING, SIMILARITIES
    from minbert.losses import LOSSES
    from minbert.optim import LR_DECAYS, OPTIMIZERS
    from minbert.schedules import SCHEDULES, UNTIL
    from minbert.training.distill import ANNEALS

    pairs = [(config.Pooling, POOLING), (config.PairEncoding, PAIR_ENCODINGS),
             (config.PairFeature, PAIR_FEATURES), (config.Similarity, SIMILARITIES), (config.CosineScale, COSINE_SCALES),
             (config.LossName, LOSSES), (config.ScheduleName, SCHEDULES), (config.Until, UNTIL),
             (config.CombineName, COMBINERS), (config.OptimizerName, OPTIMIZERS), (config.LrDecay, LR_DECAYS),
             (config.Anneal, ANNEALS)]
    for literal, registry in pairs:
        assert list(typing.get_args(literal)) == list(registry)
    assert config.LOSS_RULES == {n: (loss.kinds, loss.needs_cosine) for n, loss in LOSSES.items()}


def test_the_configs_task_names_and_shapes_are_the_task_tables():
    """config.py reads the task table (what it imports is checked in test_architecture.py)."""
    assert {n: (t.kind.name, t.is_pair, t.num_outputs) for n, t in TASKS.items()} == config.TASK_SHAPES
    assert list(typing.get_args(config.TaskName)) == list(TASKS)


@pytest.mark.parametrize("override,message", [
    (["train.lr=nan"], "train.lr: must be a finite number, got 'nan'"),
    (["train.lr=.inf"], "train.lr: must be a finite number, got inf"),
    (["train.smart.sigma=-.inf"], "train.smart.sigma: must be a finite number"),
    (["train.head_lrs={sst: .nan}"], "train.head_lrs.sst: must be a finite number"),
    (["train.lr=" + "9" * 400], "train.lr: an integer of about 400 digits is too large for a float"),
    (["train.epochs=" + "9" * 5000], "--set train.epochs: cannot parse value"),
    (["train.epochs=99999999999"], "train.epochs: must be at most 2147483647"),
    (["train.seed=-1"], r"train.seed: must be an integer in \[0, 4294967295\]"),
    (["train.seed=4294967296"], r"train.seed: must be an integer in \[0, 4294967295\]"),
    (["tasks=[sst, sst]"], "tasks: 'sst' is listed twice"),
    (["model.shared_heads=[para, para]"], "model.shared_heads: 'para' is listed twice"),
    (["model.max_length=1"], "model.max_length: must be at least 3"),
    (["train.schedule.until=fixed_steps"], "train.schedule.until: fixed_steps needs train.schedule.steps_per_epoch"),
    (["train.device=cuda:x"], "train.device: 'cuda:x' is not auto, cpu, cuda or cuda:N"),
    (["train.device=gpu"], "train.device: 'gpu' is not auto, cpu, cuda or cuda:N"),
    (["train.batch_size={nli: 4}"], "train.batch_size: 'nli' is not one of"),
    (["model.loss=cosent"], r"model.loss: loss cosent does not apply to task sst \(classify\)"),
    (["train.batch_size={sst: 2, sst: 3}"], r"--set train.batch_size: cannot parse value .*duplicate key 'sst'"),
    (["model.cnn_kernel=2000001"], r"model.cnn_kernel: cnn_kernel 2000001 is wider than model.max_length 128"),
    (["model.heads.sts.dropout=&a [*a]"], r"model.heads.sts.dropout: expected float"),  # a list holding itself (fuzz)
])
def test_nonsense_is_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, override)


def test_yaml_duplicate_keys_and_binary_files_name_file_and_line(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("train:\n  lr: 1.0e-5\n  epochs: 2\n  lr: 3.0e-5\n")
    with pytest.raises(ConfigError, match=r"dup.yaml:4: not valid YAML \(duplicate key 'lr' \(first given on line 2\)\)"):
        load_config(dup)
    binary = tmp_path / "bin.yaml"
    data = b"train:\n  epochs: 2\n\x89PNG\r\n\x1a\n\x00\xff"
    binary.write_bytes(data)
    with pytest.raises(ConfigError, match=rf"bin.yaml:3: not UTF-8 text \(byte 0x89 at offset {data.index(0x89)}\)"):
        load_config(binary)
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: [1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:3: not valid YAML") as e:
        load_config(bad)
    assert "\n" not in str(e.value)
    fine = tmp_path / "ok.yaml"  # the same key in two sections is no duplicate
    fine.write_text("train:\n  epochs: 2\n  schedule:\n    name: sequential\nmodel:\n  dropout: 0.2\n  heads: {sts: {dropout: 0.3}}\n")
    assert load_config(fine).model.head_config("sts").dropout == 0.3

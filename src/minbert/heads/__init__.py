"""Task heads, each part a named option of the config (see task_head.py for how they stack)."""
from ..losses import LOSSES
from .blocks import ConvBlock, mlp
from .pairs import PAIR_ENCODINGS, PAIR_FEATURES, pair_features
from .pooling import POOLED_WIDTH, POOLING
from .task_head import COSINE_SCALES, SIMILARITIES, CosineHead, HeadOutput, LinearHead, TaskHead, build_head

__all__ = ["COSINE_SCALES", "LOSSES", "PAIR_ENCODINGS", "PAIR_FEATURES", "POOLED_WIDTH", "POOLING", "SIMILARITIES",
           "ConvBlock", "CosineHead", "HeadOutput", "LinearHead", "TaskHead", "build_head", "mlp", "pair_features"]

"""minbert: multi-task fine-tuning of a BERT written from scratch (SST-5, Quora, STS-B).

`minbert.train(...)` and `minbert.load(RUN_DIR)` are the Python API (api.py); no submodule is named
`train` or `load`, so importing one never replaces them.
"""
__version__ = "0.1.0"  # the one source of the version: pyproject.toml and `minbert --version` read it

from . import catalogue  # noqa: F401  (registers every technique's settings)
from .api import load, train
from .encoder import BertConfig, BertModel
from .model import MultitaskModel
from .optim import AdamW
from .tokenizer import Tokenizer

__all__ = ["AdamW", "BertConfig", "BertModel", "MultitaskModel", "Tokenizer", "__version__", "load", "train"]

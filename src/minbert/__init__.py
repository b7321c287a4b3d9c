"""minbert: multi-task fine-tuning of a BERT written from scratch (SST-5, Quora, STS-B)."""
from .encoder import BertConfig, BertModel
from .model import MultitaskModel
from .optim import AdamW
from .tokenizer import Tokenizer

__all__ = ["AdamW", "BertConfig", "BertModel", "MultitaskModel", "Tokenizer"]
__version__ = "0.1.0"

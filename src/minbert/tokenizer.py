"""WordPiece tokenisation of single sentences and pairs, through the `tokenizers` library.

Built from a checkpoint's `vocab.txt` (lower-casing from its `tokenizer_config.json`), so it gives the
ids of `transformers.BertTokenizerFast`: `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` with token types.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from .checkpoints import CheckpointError, resolve_backbone

Encoded = tuple[list[int], list[int]]  # (input_ids, token_type_ids) of one example, unpadded


class Tokenizer:
    def __init__(self, vocab_file: str | Path, lowercase: bool = True, max_length: int = 128):
        vocab_file = Path(vocab_file)
        if not vocab_file.is_file():
            raise CheckpointError(f"{vocab_file}: vocabulary file not found")
        self.vocab_file = vocab_file
        self.lowercase = lowercase
        self.max_length = max_length
        try:
            vocab_file.read_bytes().decode("utf-8")
            model = WordPiece.from_file(str(vocab_file), unk_token="[UNK]", max_input_chars_per_word=100)
        except (OSError, UnicodeDecodeError, Exception) as e:  # the tokenizers library raises plain Exception
            raise CheckpointError(f"{vocab_file}: unreadable vocabulary ({' '.join(str(e).split())[:200]})") from None
        tok = HFTokenizer(model)
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                    strip_accents=None, lowercase=lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        ids = {t: tok.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]")}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise CheckpointError(f"{vocab_file}: special tokens {missing} not in the vocabulary")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
        )
        tok.enable_truncation(max_length, strategy="longest_first")
        self._tok = tok
        self.cls_id, self.sep_id, self.pad_id = ids["[CLS]"], ids["[SEP]"], ids["[PAD]"]
        self.mask_id, self.unk_id = ids["[MASK]"], ids["[UNK]"]
        self.vocab_size = tok.get_vocab_size()

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, max_length: int = 128) -> "Tokenizer":
        """From an HF checkpoint folder (`vocab.txt`, optional `tokenizer_config.json`); None = default backbone."""
        folder = resolve_backbone(path)
        lowercase = True
        cfg = folder / "tokenizer_config.json"
        if cfg.is_file():
            try:
                settings = json.loads(cfg.read_bytes().decode("utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
                raise CheckpointError(f"{cfg}: not valid JSON ({' '.join(str(e).split())[:200]})") from None
            if not isinstance(settings, dict):
                raise CheckpointError(f"{cfg}: expected a JSON object, got {type(settings).__name__}")
            lowercase = bool(settings.get("do_lower_case", True))
        return cls(folder / "vocab.txt", lowercase=lowercase, max_length=max_length)

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vocab.txt").write_bytes(self.vocab_file.read_bytes())
        (folder / "tokenizer_config.json").write_text(json.dumps(
            {"do_lower_case": self.lowercase, "tokenizer_class": "BertTokenizer", "model_max_length": self.max_length}) + "\n")

    def encode(self, texts: Sequence[str], texts2: Sequence[str] | None = None) -> list[Encoded]:
        """Token ids and token types of each sentence (or pair), truncated, not padded."""
        inputs = list(texts) if texts2 is None else list(zip(texts, texts2))
        return [(e.ids, e.type_ids) for e in self._tok.encode_batch(inputs)]

    def pad(self, encoded: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        """Pad a batch to its longest member: `input_ids`, `attention_mask`, `token_type_ids` (batch, seq) int64."""
        width = max(len(ids) for ids, _ in encoded)
        input_ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
        token_type_ids = torch.zeros((len(encoded), width), dtype=torch.long)
        attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, (ids, types) in enumerate(encoded):
            n = len(ids)
            input_ids[row, :n] = torch.tensor(ids)
            token_type_ids[row, :n] = torch.tensor(types)
            attention_mask[row, :n] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}

    def __call__(self, texts: Sequence[str] | str, texts2: Sequence[str] | str | None = None) -> dict[str, torch.Tensor]:
        if isinstance(texts, str):
            texts = [texts]
        if isinstance(texts2, str):
            texts2 = [texts2]
        return self.pad(self.encode(texts, texts2))

"""WordPiece tokenisation of single sentences and pairs, through the `tokenizers` library.

Built from a checkpoint's `tokenizer.json` when it has one, else from its `vocab.txt` (lower-casing from
its `tokenizer_config.json`). Either way minbert sets the parts that decide its inputs: truncation to its
`max_length` (longest first), no padding inside the tokenizer, and the BERT template `[CLS] a [SEP]` /
`[CLS] a [SEP] b [SEP]` with token types, so the ids are those of `transformers.BertTokenizerFast`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from . import writes
from .errors import CheckpointError
from .backbone import resolve_backbone

Encoded = tuple[list[int], list[int]]  # (input_ids, token_type_ids) of one example, unpadded
SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]")


def _lowercases(normalizer: dict | None) -> bool:
    """Whether a tokenizer.json normalizer lower-cases (a BertNormalizer's flag, or a Lowercase step)."""
    if not normalizer:
        return False
    if normalizer.get("type") == "Sequence":
        return any(_lowercases(n) for n in normalizer.get("normalizers", []))
    return normalizer.get("type") == "Lowercase" or (normalizer.get("type") == "BertNormalizer"
                                                     and bool(normalizer.get("lowercase", True)))


class Tokenizer:
    def __init__(self, vocab_file: str | Path, lowercase: bool = True, max_length: int = 128):
        """A WordPiece tokenizer from a BERT `vocab.txt`, normalised as BERT's (lower-cased or not)."""
        vocab_file = Path(vocab_file)
        if not vocab_file.is_file():
            raise CheckpointError(f"{vocab_file}: vocabulary file not found")
        try:
            vocab_file.read_bytes().decode("utf-8")
            model = WordPiece.from_file(str(vocab_file), unk_token="[UNK]", max_input_chars_per_word=100)
        except Exception as e:  # OSError, UnicodeDecodeError, and the tokenizers library's plain Exception
            raise CheckpointError(f"{vocab_file}: unreadable vocabulary ({' '.join(str(e).split())[:200]})") from None
        tok = HFTokenizer(model)
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                    strip_accents=None, lowercase=lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        self._setup(tok, vocab_file, {"vocab.txt": vocab_file.read_bytes()}, lowercase, max_length)

    @classmethod
    def from_tokenizer_file(cls, tokenizer_file: str | Path, max_length: int = 128,
                            vocab_file: str | Path | None = None) -> "Tokenizer":
        """From a `tokenizer.json` (the `tokenizers` library's own format); `vocab_file`, if given, is kept
        beside it when saving."""
        tokenizer_file = Path(tokenizer_file)
        if not tokenizer_file.is_file():
            raise CheckpointError(f"{tokenizer_file}: tokenizer file not found")
        text = tokenizer_file.read_bytes()
        try:
            tok = HFTokenizer.from_str(text.decode("utf-8"))
            lowercase = _lowercases(json.loads(text).get("normalizer"))
        except Exception as e:  # tokenizers raises a bare Exception for a malformed file
            raise CheckpointError(f"{tokenizer_file}: not a readable tokenizer.json ({e})") from e
        files = {"tokenizer.json": text}
        if vocab_file is not None and Path(vocab_file).is_file():
            files["vocab.txt"] = Path(vocab_file).read_bytes()
        self = cls.__new__(cls)
        self._setup(tok, tokenizer_file, files, lowercase, max_length)
        return self

    def _setup(self, tok: HFTokenizer, source: Path, files: dict[str, bytes], lowercase: bool,
               max_length: int) -> None:
        """minbert's settings on top of the loaded model and normaliser: special-token ids, template, truncation."""
        ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise CheckpointError(f"{source}: special tokens {missing} not in the vocabulary (not a BERT tokenizer?)")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
        )
        tok.no_padding()
        tok.enable_truncation(max_length, strategy="longest_first")
        self._tok = tok
        self.source = source  # the file it was built from: tokenizer.json or vocab.txt
        self._files = files  # what save_pretrained writes back, byte for byte
        self.lowercase = lowercase
        self.max_length = max_length
        self.cls_id, self.sep_id, self.pad_id = ids["[CLS]"], ids["[SEP]"], ids["[PAD]"]
        self.mask_id, self.unk_id = ids["[MASK]"], ids["[UNK]"]
        self.vocab_size = tok.get_vocab_size()

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, max_length: int = 128) -> "Tokenizer":
        """From a checkpoint folder or Hub id: its `tokenizer.json` if present, else `vocab.txt` (with the
        lower-casing of `tokenizer_config.json`); None = the default backbone."""
        folder = resolve_backbone(path)
        if (folder / "tokenizer.json").is_file():
            return cls.from_tokenizer_file(folder / "tokenizer.json", max_length, folder / "vocab.txt")
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
        """Write the files it was built from (tokenizer.json and / or vocab.txt) and a tokenizer_config.json."""
        folder = Path(folder)
        writes.mkdir(folder)
        for name in ("tokenizer.json", "vocab.txt"):
            if name in self._files:
                writes.write_bytes(folder / name, self._files[name])
            else:  # a stale one would be loaded instead of (or beside) what this tokenizer is
                (folder / name).unlink(missing_ok=True)
        writes.write_text(folder / "tokenizer_config.json", json.dumps(
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

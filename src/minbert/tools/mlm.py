"""Further masked-language-model pre-training of the encoder on in-domain text (Devlin et al. 2019;
dynamic masking as in RoBERTa, Liu et al. 2019). Seed report 001 tried it on IMDb reviews.

Text: the task sentences (train splits), CFIMDB reviews and any text files (one passage per line),
de-duplicated; a held-out share is kept aside. Each batch is masked afresh: 15% of the real tokens
are chosen, of which 80% become [MASK], 10% a random token and 10% stay. The MLM head (dense, GELU,
LayerNorm, decoder) has its decoder tied to the word embeddings, as in BERT. The result is an
encoder checkpoint folder that `minbert train --set model.backbone=DIR` accepts.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import writes
from ..backbone import locate_backbone
from ..data.batching import bucketed_batches, sorted_batches
from ..data.loading import resolve_data_dir
from ..errors import ConfigError, DataError, RunFolderError
from ..encoder import BertModel
from ..optim import build_optimizer
from ..tasks import get_task
from ..tokenizer import Tokenizer
from ..optim import lr_lambda
from ..run_folder import RunFolder
from ..schema import MIN_MAX_LENGTH
from ..settings import Settings, setting
from ..training.setup import RunLog, check_writable, seed_everything
from ..training.step import objective_step

@dataclass
class MlmConfig(Settings):
    """`minbert pretrain-mlm`'s config: further masked-language-model pre-training of the encoder."""

    backbone: str | None = setting(None, "the encoder to start from (folder or Hub id); None = all-MiniLM-L6-v2")
    data_dir: str | None = setting(None, "where the course files are (as for train)")
    sources: list[str] = setting(doc="tasks whose train text is used", one_of="any_task",
                                 factory=lambda: ["sst", "para", "sts", "cfimdb"])
    text_files: list[str] | None = setting(None, "more text, one passage per line")
    max_length: int = setting(128, check="positive")
    batch_size: int = setting(32, check="positive")
    accumulate: int = setting(1, "gradient accumulation", check="positive")
    lr: float = setting(5e-5, check="non_negative")
    weight_decay: float = setting(0.01, check="non_negative")
    warmup: float = setting(0.06, check="unit")
    epochs: int = setting(1, check="positive")
    max_steps: int | None = setting(None, "stop after this many optimizer updates", check="positive")
    train_limit: int | None = setting(None, "use only the first N training passages (quick runs)", check="positive")
    mask_prob: float = setting(0.15, check="unit")
    heldout: float = setting(0.05, "share of the passages kept aside to measure MLM loss before and after",
                             check="unit")
    seed: int = setting(11711, check="seed")

    def check(self, key, root):
        twice = sorted({n for n in self.sources if self.sources.count(n) > 1})
        if twice:
            raise ConfigError(f"sources: {twice[0]!r} is listed twice")
        if self.max_length < MIN_MAX_LENGTH:
            raise ConfigError(f"max_length: must be at least {MIN_MAX_LENGTH} ([CLS], a token, [SEP]), "
                              f"got {self.max_length}")


HELDOUT_BATCH = 32  # the held-out loss's batches: fixed, so its masking does not depend on the training batch size


class MlmHead(nn.Module):
    """BERT's prediction head; `decoder.weight` is the encoder's word-embedding matrix itself."""

    def __init__(self, encoder: BertModel):
        super().__init__()
        cfg = encoder.config
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.decoder = nn.Linear(cfg.hidden_size, cfg.vocab_size)
        self.decoder.weight = encoder.embeddings.word_embeddings.weight  # tied
        nn.init.zeros_(self.decoder.bias)
        nn.init.normal_(self.dense.weight, std=0.02)
        nn.init.zeros_(self.dense.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.LayerNorm(F.gelu(self.dense(hidden))))


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, tokenizer: Tokenizer, prob: float,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked inputs and labels (-100 where nothing is predicted); special tokens and padding are never chosen."""
    special = (input_ids == tokenizer.cls_id) | (input_ids == tokenizer.sep_id) | (attention_mask == 0)
    chosen = (torch.rand(input_ids.shape, generator=generator) < prob) & ~special
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    roll = torch.rand(input_ids.shape, generator=generator)
    masked = input_ids.clone()
    masked[chosen & (roll < 0.8)] = tokenizer.mask_id
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    masked[swap] = torch.randint(tokenizer.vocab_size, (int(swap.sum()),), generator=generator)
    return masked, labels


def collect_text(cfg: MlmConfig, data_dir: Path | None) -> list[str]:
    """The passages to train on: task sentences, CFIMDB reviews and text files, de-duplicated in order."""
    seen: dict[str, None] = {}
    for name in cfg.sources:
        task = get_task(name)
        examples, _ = task.read(data_dir, "train")
        for ex in examples:
            for text in ex.texts:
                seen.setdefault(text, None)
    for path in cfg.text_files or []:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"{p}: text file not found")
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise DataError(f"{p}: not UTF-8 text ({e})") from e
        for line in lines:
            if line.strip():
                seen.setdefault(line.strip(), None)
    if not seen:
        raise DataError("pretrain-mlm: no text (set mlm.sources or mlm.text_files)")
    return list(seen)


def mlm_loss(encoder: BertModel, head: MlmHead, batch: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    hidden = encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).last_hidden_state
    picked = labels != -100
    return F.cross_entropy(head(hidden[picked]), labels[picked])


@torch.inference_mode()
def heldout_loss(encoder: BertModel, head: MlmHead, tokenizer: Tokenizer, encoded: list, cfg: MlmConfig) -> float:
    """Mean MLM loss on the held-out text with a fixed masking (same seed and batches before and after, and
    whatever the training batch size, so that runs with different batch sizes are measured alike)."""
    encoder.eval()
    head.eval()
    g = torch.Generator().manual_seed(cfg.seed + 1)
    total, count = 0.0, 0
    for index in sorted_batches([len(e[0]) for e in encoded], HELDOUT_BATCH):
        batch = tokenizer.pad([encoded[i] for i in index])
        masked, labels = mask_tokens(batch["input_ids"], batch["attention_mask"], tokenizer, cfg.mask_prob, g)
        n = int((labels != -100).sum())
        if n:
            total += mlm_loss(encoder, head, {**batch, "input_ids": masked}, labels).item() * n
            count += n
    encoder.train()
    head.train()
    return total / max(count, 1)


ENCODER_FILES = ("model.safetensors", "mlm_report.json")  # what a finished pretrain-mlm leaves in its folder


def pretrain_mlm(cfg: MlmConfig, out_dir: Path, data_dir: str | None = None, overwrite: bool = False) -> dict:
    """Pre-train, then write the encoder into `out_dir`. A folder that holds an earlier one is refused unless
    `overwrite`; one process writes the folder at a time."""
    from ..preflight import preflight_mlm

    preflight_mlm(cfg, data_dir)  # backbone, data and text files: before the output folder is created
    data_path = resolve_data_dir(data_dir, cfg.data_dir) if cfg.sources else None
    backbone = locate_backbone(cfg.backbone)  # a folder or Hub id, resolved once, before anything is written
    if not overwrite and any((out_dir / name).exists() for name in ENCODER_FILES):
        raise RunFolderError(f"{out_dir} holds an encoder from pretrain-mlm: write to another folder (--out), "
                             "or replace it with --overwrite")
    with RunFolder.output(out_dir, "pretrain-mlm"):  # never into a training run's folder
        return _pretrain(cfg, out_dir, data_path, backbone)


def _pretrain(cfg: MlmConfig, out_dir: Path, data_path: Path | None, backbone) -> dict:
    check_writable(out_dir)
    log = RunLog(out_dir / "log.txt")
    seed_everything(cfg.seed)
    log(f"backbone: {backbone.spec or 'all-MiniLM-L6-v2 (default)'} ({backbone.folder})")
    tokenizer = Tokenizer.from_pretrained(backbone.folder, max_length=cfg.max_length)
    encoder = BertModel.from_pretrained(backbone.folder)
    head = MlmHead(encoder)
    texts = collect_text(cfg, data_path)
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    n_held = max(1, int(len(texts) * cfg.heldout)) if len(texts) > 1 else 0
    held = tokenizer.encode([texts[i] for i in order[:n_held]])
    train_set = tokenizer.encode([texts[i] for i in order[n_held:]])
    if cfg.train_limit:
        train_set = train_set[: cfg.train_limit]
    log(f"pretrain-mlm: {len(train_set)} training passages, {len(held)} held out; sources {cfg.sources}, "
        f"files {cfg.text_files or []}")
    before = heldout_loss(encoder, head, tokenizer, held, cfg)
    log(f"held-out MLM loss before: {before:.4f} (perplexity {math.exp(before):.2f})")

    params = list(encoder.parameters()) + [p for n, p in head.named_parameters() if n != "decoder.weight"]
    optimizer = build_optimizer("adamw", [{"params": params, "lr": cfg.lr, "weight_decay": cfg.weight_decay}], lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed)
    lengths = [len(e[0]) for e in train_set]
    batches_per_epoch = [bucketed_batches(lengths, cfg.batch_size, g) for _ in range(cfg.epochs)]
    # max_steps counts optimizer updates, as transformers' TrainingArguments does: `accumulate` batches each
    steps = [b for epoch in batches_per_epoch for b in epoch][: cfg.max_steps * cfg.accumulate if cfg.max_steps else None]
    updates = math.ceil(len(steps) / cfg.accumulate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(updates, cfg.warmup, "linear"))
    def loss_of(index: list[int]) -> torch.Tensor | None:  # the objective: a batch masked afresh, its MLM loss
        batch = tokenizer.pad([train_set[j] for j in index])
        masked, labels = mask_tokens(batch["input_ids"], batch["attention_mask"], tokenizer, cfg.mask_prob, g)
        return mlm_loss(encoder, head, {**batch, "input_ids": masked}, labels) if (labels != -100).any() else None

    start, running = time.time(), []
    for first in range(0, len(steps), cfg.accumulate):  # one update of `accumulate` batches (the last: the rest)
        running += objective_step(loss_of, steps[first:first + cfg.accumulate], optimizer, scheduler, params,
                                  clip=1.0, accumulate=cfg.accumulate)[1]
        for i in range(first + 1, min(first + cfg.accumulate, len(steps)) + 1):
            if i % 100 == 0 and running:
                log(f"batch {i}/{len(steps)} (update {math.ceil(i / cfg.accumulate)}/{updates}): "
                    f"train MLM loss {sum(running[-100:]) / len(running[-100:]):.4f}")
    after = heldout_loss(encoder, head, tokenizer, held, cfg)
    log(f"held-out MLM loss after: {after:.4f} (perplexity {math.exp(after):.2f}); "
        f"{updates} updates ({len(steps)} batches) in {time.time() - start:.0f} s")
    report = {"heldout_loss_before": before, "heldout_loss_after": after, "perplexity_before": math.exp(before),
              "perplexity_after": math.exp(after), "steps": updates, "batches": len(steps),
              "train_passages": len(train_set),
              "heldout_passages": len(held)}
    with writes.staged(out_dir) as stage:  # the whole encoder, or on a failure nothing new
        encoder.save_pretrained(stage)
        tokenizer.save_pretrained(stage)
        writes.write_text(stage / "mlm_report.json", json.dumps(report, indent=2) + "\n")
    log(f"encoder written to {out_dir}: use it with `minbert train --set model.backbone={out_dir}`")
    return report

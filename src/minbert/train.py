"""The one training loop: schedule -> per-task batches -> summed loss -> AdamW + warm-up/decay -> dev eval.

Each epoch ends with a dev evaluation; the checkpoint with the best dev score (the course's overall
score when SST, Quora and STS are all trained, else the mean of the task metrics) is kept in
RUN_DIR/best, and its dev and test-student predictions are written in the course's format.
"""
from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .config import Config, save_config
from .data.batching import BatchStream, EncodedSet
from .data.loading import load_split, resolve_data_dir
from .data.readers import DataError
from .encoder import BertModel
from .evaluate import evaluate, prediction_path, write_predictions
from .model import MultitaskModel
from .optim import build_optimizer
from .schedules import build_schedule
from .tasks import get_task
from .tokenizer import Tokenizer


class RunLog:
    """Prints a line and appends it to RUN_DIR/log.txt."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        with self.path.open("a") as f:
            f.write(line + "\n")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def selection_score(metrics: dict[str, float], tasks: list[str]) -> float:
    """What 'best' means: the course's overall score if present, else the mean task metric."""
    if "overall" in metrics:
        return metrics["overall"]
    return float(np.mean([metrics[t] for t in tasks]))


def build_model(cfg: Config, backbone: str | None = None) -> tuple[MultitaskModel, Tokenizer]:
    source = backbone if backbone is not None else cfg.model.backbone
    tokenizer = Tokenizer.from_pretrained(source, max_length=cfg.model.max_length)
    encoder = BertModel.from_pretrained(source)
    model = MultitaskModel(encoder, cfg.tasks, cfg.model.pooling, cfg.model.pair_encoding, cfg.model.dropout)
    return model, tokenizer


def parameter_groups(model: MultitaskModel, cfg: Config) -> list[dict]:
    """Encoder and heads, each split into decayed weights and undecayed biases / LayerNorm weights."""
    groups = []
    for module, lr in ((model.encoder, cfg.train.lr), (model.heads, cfg.train.head_lr or cfg.train.lr)):
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        decay = [p for n, p in named if p.ndim >= 2 and "LayerNorm" not in n]
        no_decay = [p for n, p in named if not (p.ndim >= 2 and "LayerNorm" not in n)]
        groups += [g for g in ({"params": decay, "lr": lr, "weight_decay": cfg.train.weight_decay},
                               {"params": no_decay, "lr": lr, "weight_decay": 0.0}) if g["params"]]
    return groups


# learning-rate factor after warm-up, as a function of the fraction of the post-warm-up steps done
LR_DECAYS = {
    "linear": lambda done: max(0.0, 1.0 - done),
    "constant": lambda done: 1.0,
}


def lr_lambda(total_steps: int, warmup: float, decay: str):
    """Linear warm-up over the first `warmup` fraction of the steps, then the named decay."""
    warm = int(total_steps * warmup)
    after = LR_DECAYS[decay]

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return after((step - warm) / max(1, total_steps - warm))
    return factor


def train(cfg: Config, run_dir: Path, data_dir: str | None = None) -> dict[str, float]:
    """Train per `cfg`, writing the run directory; returns the best dev metrics."""
    data_path = resolve_data_dir(data_dir, cfg.data.dir)  # fail before touching the run directory
    for name in cfg.tasks:
        for split in ("train", "dev"):
            if not get_task(name).path(data_path, split).is_file():
                raise DataError(f"{get_task(name).path(data_path, split)}: file not found")
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("log.txt", "metrics.jsonl", "best_metrics.json"):
        (run_dir / stale).unlink(missing_ok=True)
    log = RunLog(run_dir / "log.txt")
    save_config(cfg, run_dir / "config.yaml")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    log(f"minbert train: tasks {cfg.tasks}, data {data_path}, run {run_dir}")

    model, tokenizer = build_model(cfg)
    log(f"backbone: {cfg.model.backbone or 'all-MiniLM-L6-v2 (default)'}; {model.encoder.num_parameters():,} encoder parameters")
    train_sets: dict[str, EncodedSet] = {}
    dev_sets: dict[str, EncodedSet] = {}
    for name, task in model.tasks.items():
        joint = model.joint_input(name)
        train_sets[name] = load_split(task, "train", data_path, tokenizer, joint, cfg.data.strict, log,
                                      cfg.data.train_limit, cfg.train.seed)
        dev_sets[name] = load_split(task, "dev", data_path, tokenizer, joint, cfg.data.strict, log, cfg.data.dev_limit)

    if cfg.train.freeze_encoder:
        model.freeze_encoder()
    generator = torch.Generator().manual_seed(cfg.train.seed)
    streams = {n: BatchStream(train_sets[n], tokenizer, cfg.train.batch_size[n], generator, cfg.train.bucket)
               for n in cfg.tasks}
    schedule = build_schedule(cfg.train.schedule, {n: s.batches_per_pass() for n, s in streams.items()},
                              cfg.train.steps_per_epoch)
    total_steps = len(schedule) * cfg.train.epochs
    optimizer = build_optimizer(cfg.train.optimizer, parameter_groups(model, cfg), lr=cfg.train.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total_steps, cfg.train.warmup, cfg.train.lr_decay))
    trainable = [p for p in model.parameters() if p.requires_grad]
    log(f"schedule {cfg.train.schedule}: {len(schedule)} steps/epoch x {cfg.train.epochs} epochs; "
        f"batch sizes {{{', '.join(f'{n}: {cfg.train.batch_size[n]}' for n in cfg.tasks)}}}; "
        f"{sum(p.numel() for p in trainable):,} trainable parameters")

    best_score, best_metrics = -math.inf, {}
    start = time.time()
    for epoch in range(1, cfg.train.epochs + 1):
        model.train()
        if cfg.train.freeze_encoder:
            model.encoder.eval()  # a frozen encoder also keeps its dropout off
        sums = {n: 0.0 for n in cfg.tasks}
        counts = {n: 0 for n in cfg.tasks}
        examples = 0
        epoch_start = time.time()
        bar = tqdm(schedule, desc=f"epoch {epoch}", total=len(schedule), file=sys.stderr,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0)
        for step_tasks in bar:
            optimizer.zero_grad(set_to_none=True)
            for name in step_tasks:
                batch = streams[name].next()
                loss = model.tasks[name].loss(model(name, batch["inputs"]), batch["labels"])
                loss.backward()  # one backward per task: the gradient of the summed loss, less memory
                sums[name] += loss.item()
                counts[name] += 1
                examples += len(batch["index"])
            if cfg.train.grad_clip:
                torch.nn.utils.clip_grad_norm_(trainable, cfg.train.grad_clip)
            optimizer.step()
            scheduler.step()
        train_seconds = time.time() - epoch_start
        metrics, _ = evaluate(model, dev_sets, tokenizer, cfg.eval.batch_size)
        score = selection_score(metrics, cfg.tasks)
        record = {"epoch": epoch, "train_loss": {n: sums[n] / max(1, counts[n]) for n in cfg.tasks},
                  "dev": metrics, "train_seconds": round(train_seconds, 1),
                  "train_examples_per_second": round(examples / train_seconds, 1),
                  "eval_seconds": round(time.time() - epoch_start - train_seconds, 1)}
        with (run_dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        improved = score > best_score
        log(f"epoch {epoch}: dev {format_metrics(metrics)}; loss {format_metrics(record['train_loss'])}; "
            f"{record['train_examples_per_second']} train examples/s" + ("; new best, saved" if improved else ""))
        if improved:
            best_score, best_metrics = score, {**metrics, "epoch": epoch}
            save_checkpoint(model, tokenizer, run_dir / "best")
    log(f"training done in {time.time() - start:.0f} s; best dev (epoch {best_metrics.get('epoch')}): "
        f"{format_metrics({k: v for k, v in best_metrics.items() if k != 'epoch'})}")
    (run_dir / "best_metrics.json").write_text(json.dumps(best_metrics, indent=2) + "\n")

    model.load(run_dir / "best")
    write_split_predictions(model, tokenizer, cfg, data_path, run_dir, "dev", dev_sets, log)
    if cfg.eval.test_predictions:
        write_split_predictions(model, tokenizer, cfg, data_path, run_dir, "test", None, log)
    return best_metrics


def write_split_predictions(model: MultitaskModel, tokenizer: Tokenizer, cfg: Config, data_path: Path,
                            run_dir: Path, split: str, sets: dict[str, EncodedSet] | None,
                            log) -> dict[str, float]:
    """Predict every task on `split` (dev or test), write the course's files, return metrics (dev only)."""
    if sets is None:
        sets = {n: load_split(t, split, data_path, tokenizer, model.joint_input(n), cfg.data.strict, log,
                              cfg.data.dev_limit if split == "dev" else None)
                for n, t in model.tasks.items()}
    metrics, predictions = evaluate(model, sets, tokenizer, cfg.eval.batch_size)
    for name, preds in predictions.items():
        path = prediction_path(run_dir, name, split)
        write_predictions(model.tasks[name], sets[name].ids, preds, path)
    log(f"{split} predictions written to {run_dir / 'predictions'}" + (f"; {split} {format_metrics(metrics)}" if metrics else ""))
    return metrics


def save_checkpoint(model: MultitaskModel, tokenizer: Tokenizer, folder: Path) -> None:
    """Write to a temporary folder, then swap it in, so an interrupted save leaves the previous one whole."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    tokenizer.save_pretrained(tmp)
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())

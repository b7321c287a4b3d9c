"""Evaluation: batched inference, the tasks' metrics and the course's overall score, which epoch counts as
best (`selection_score`), and the prediction files of a split."""
from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from . import writes
from .schema import Config
from .data.batching import EncodedSet, sorted_batches, to_device
from .data.loading import load_split
from .heads import HeadOutput
from .model import MultitaskModel
from .tasks import Task, overall_score
from .tokenizer import Tokenizer


@torch.inference_mode()
def batched_outputs(model: MultitaskModel, fn: Callable[[list[dict[str, torch.Tensor]]], torch.Tensor],
                    data: EncodedSet, tokenizer: Tokenizer, batch_size: int, device: torch.device | None = None,
                    progress: bool = False) -> torch.Tensor:
    """`fn(padded inputs)` over length-sorted batches in eval mode, rows back in file order (float, on CPU).
    `progress` shows a bar on standard error (when it is a terminal)."""
    was_training = model.training
    model.eval()
    outputs: list[torch.Tensor | None] = [None] * len(data)
    with tqdm(total=len(data), unit="row", file=sys.stderr, disable=None if progress else True) as bar:
        for index in sorted_batches(data.lengths(), batch_size):
            out = fn(to_device(data.batch(tokenizer, index)["inputs"], device)).float().cpu()
            for i, row in zip(index, out):
                outputs[i] = row
            bar.update(len(index))
    model.train(was_training)
    return torch.stack(outputs) if outputs else torch.zeros((0,))


def predict_outputs(model: MultitaskModel, task: str, data: EncodedSet, tokenizer: Tokenizer, batch_size: int,
                    device: torch.device | None = None, progress: bool = False) -> HeadOutput:
    """The head's outputs for every example, in file order: the values (logits or scores) and, for a task's
    own cosine head, the cosines (what the cosine-embedding loss reads)."""
    head = model.head(task)
    if not len(data):
        return HeadOutput(torch.zeros((0,)))
    if not head.gives_cosine or head.task.name != task:
        return HeadOutput(batched_outputs(model, lambda x: model(task, x), data, tokenizer, batch_size, device, progress))
    both = batched_outputs(model, lambda x: torch.stack(model.outputs(task, x)[::2], -1),  # (value, cosine)
                           data, tokenizer, batch_size, device, progress)
    return HeadOutput(both[:, 0], None, both[:, 1])


def predict_set(model: MultitaskModel, task: str, data: EncodedSet, tokenizer: Tokenizer,
                batch_size: int, device: torch.device | None = None,
                progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Outputs (logits or scores) and predictions for every example, in file order."""
    out = predict_outputs(model, task, data, tokenizer, batch_size, device, progress)
    if not len(out.value):
        return np.zeros((0,)), np.zeros((0,))
    return out.value.numpy(), model.tasks[task].kind.predict(out.value).numpy()


def evaluate(model: MultitaskModel, sets: dict[str, EncodedSet], tokenizer: Tokenizer,
             batch_size: int, device: torch.device | None = None, losses: dict[str, float] | None = None,
             weights: dict[str, float] | None = None) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Each task's metrics (its selecting one under its name, others as `TASK.METRIC`), `overall` when every task
    of the model is there (`tasks.overall_score`, with `weights` when given); and predictions.
    `losses`, when given, receives each labelled task's mean loss (the training loss on these examples)."""
    metrics: dict[str, float] = {}
    predictions: dict[str, np.ndarray] = {}
    for name, data in sets.items():
        out = predict_outputs(model, name, data, tokenizer, batch_size, device)
        predictions[name] = model.tasks[name].kind.predict(out.value).numpy() if len(out.value) else np.zeros((0,))
        if data.labels is not None:
            metrics.update(model.tasks[name].scores(predictions[name], data.labels.numpy()))
            if losses is not None and len(out.value):
                with torch.no_grad():
                    on_device = HeadOutput(*(None if t is None else t.to(device) for t in out))
                    losses[name] = float(model.loss(name, on_device, data.labels.to(device)))
    overall = overall_score(metrics, list(model.tasks), weights)
    if overall is not None:
        metrics["overall"] = overall
    return metrics, predictions


def prediction_lines(task: Task, ids: list[str], preds: np.ndarray) -> list[str]:
    """A prediction file's lines in the task's `prediction_format`: `course` (a header `id \\t Predicted_...`, then
    `id , value` per row), `tsv` or `csv` (a header of `prediction_id` and `prediction_header`, then a row each)."""
    values = [task.format_value(v) for v in preds]
    fmt, head = task.spec.prediction_format, (task.spec.prediction_id, task.prediction_header)
    if fmt == "course":
        return [f"id \t {head[1]} \n", *(f"{i} , {v} \n" for i, v in zip(ids, values))]
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
    writer.writerow(head)
    writer.writerows(zip(ids, values))
    return out.getvalue().splitlines(keepends=True)


def write_predictions(task: Task, ids: list[str], preds: np.ndarray, path: Path) -> None:
    writes.write_text(path, "".join(prediction_lines(task, ids, preds)))


def prediction_path(run_dir: Path, task: Task, split: str) -> Path:
    return run_dir / "predictions" / task.prediction_file(split)


def write_split_predictions(model: MultitaskModel, tokenizer: Tokenizer, cfg: Config, data_path: Path,
                            run_dir: Path, split: str, sets: dict[str, EncodedSet] | None,
                            log, tasks: list[str] | None = None) -> dict[str, float]:
    """Predict every task (or those in `tasks`) on `split` (dev or test), write the course's files into
    `run_dir`/predictions, return metrics (dev only)."""
    if sets is None:
        sets = {n: load_split(t, split, data_path, tokenizer, model.joint_input(n), cfg.data.strict, log,
                              cfg.data.dev_limit if split == "dev" else None)
                for n, t in model.tasks.items() if (tasks is None or n in tasks) and t.has_split(split)}
    device = next(model.parameters()).device
    metrics, predictions = evaluate(model, sets, tokenizer, cfg.eval.batch_size, device, weights=cfg.eval.weights)
    for name, preds in predictions.items():
        write_predictions(model.tasks[name], sets[name].ids, preds, prediction_path(run_dir, model.tasks[name], split))
    log(f"{split} predictions written to {run_dir / 'predictions'}" + (f"; {split} {format_metrics(metrics)}" if metrics else ""))
    return metrics


def selection_score(metrics: dict[str, float], tasks: list[str]) -> float:
    """What 'best' means: the course's overall score if present, else the mean task metric."""
    if "overall" in metrics:
        return metrics["overall"]
    return float(np.mean([metrics[t] for t in tasks]))


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())

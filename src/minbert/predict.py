"""A trained run as a predictor: load it once, then score texts or pairs and embed sentences.

`Predictor` is what `minbert predict`, `minbert.load(RUN_DIR)` and `minbert bench` use. Texts are
encoded as each task's head wants them (one joint input for single sentences and cross-encoded pairs, two
for Siamese pairs), run in length-sorted batches in inference mode, and given back in input order:
predictions in the task's units, and probabilities for the classifiers (class probabilities for sst /
cfimdb, the paraphrase probability for para). `write_results` writes them as CSV or JSONL.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Sequence

import numpy as np

from .config import Config, ConfigError
from .data.batching import encode_examples
from .data.readers import Example
from .evaluate import batched_outputs, predict_set
from .heads import POOLED_WIDTH
from .model import MultitaskModel
from .tasks import Task
from .tokenizer import Tokenizer


@dataclass
class Predictions:
    """One task's results for a list of inputs, in input order."""

    task: Task
    ids: list[str]
    outputs: np.ndarray  # the head's outputs: class logits, the paraphrase logit, or the 0-5 STS score
    predictions: np.ndarray  # class index (sst, cfimdb), 0/1 (para), or the score (sts)
    probabilities: np.ndarray | None  # (n, classes) for sst / cfimdb, (n,) for para, None for sts

    def __len__(self) -> int:
        return len(self.ids)

    def formatted(self) -> list[str]:
        """The predictions as the task writes them in its prediction files."""
        return [self.task.kind.format_value(v) for v in self.predictions]


class Predictor:
    def __init__(self, cfg: Config, model: MultitaskModel, tokenizer: Tokenizer, batch_size: int | None = None):
        self.cfg, self.model, self.tokenizer = cfg, model.eval(), tokenizer
        self.batch_size = batch_size or cfg.eval.batch_size
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, run_dir: str | Path, batch_size: int | None = None) -> "Predictor":
        from .runs import load_run
        return cls(*load_run(run_dir), batch_size=batch_size)

    @property
    def tasks(self) -> list[str]:
        return list(self.model.tasks)

    def task(self, name: str) -> Task:
        if name not in self.model.tasks:
            raise ConfigError(f"task {name}: this run was trained on {self.tasks}")
        return self.model.tasks[name]

    def predict(self, task: str, texts: Sequence[str] | Sequence[Sequence[str]], progress: bool = False) -> Predictions:
        """Score a list of texts (sst, cfimdb) or of (text, text) pairs (para, sts)."""
        t = self.task(task)
        examples = []
        for i, item in enumerate(texts, 1):
            fields = (item,) if isinstance(item, str) else tuple(item)
            if len(fields) != len(t.text_columns) or not all(isinstance(f, str) for f in fields):
                what = "a text" if len(t.text_columns) == 1 else "a pair of texts"
                raise ConfigError(f"task {task} takes {what} per item; item {i} is {item!r}")
            examples.append(Example(str(i), fields, None))
        return self.predict_examples(task, examples, progress)

    def predict_examples(self, task: str, examples: list[Example], progress: bool = False) -> Predictions:
        t = self.task(task)
        data = encode_examples(examples, self.tokenizer, self.model.joint_input(task))
        outputs, preds = predict_set(self.model, task, data, self.tokenizer, self.batch_size, self.device, progress)
        probs = t.kind.probabilities(outputs) if t.kind.probability_columns(t.num_outputs) else None
        return Predictions(t, [e.id for e in examples], outputs, preds, probs)

    def encode(self, texts: Sequence[str], task: str | None = None, progress: bool = False) -> np.ndarray:
        """Sentence vectors (n, width) as the head of `task` (default: the run's first task) pools the encoder's
        token states (after its CNN block, if it has one; before a cosine head's projection)."""
        head = self.model.head(self.task(task or self.tasks[0]).name)
        data = encode_examples([Example(str(i), (s,), None) for i, s in enumerate(texts)], self.tokenizer, True)
        vectors = batched_outputs(self.model, lambda inputs: head.sentence_vector(self.model.encoder, inputs[0]),
                                  data, self.tokenizer, self.batch_size, self.device, progress)
        if not len(texts):
            return np.zeros((0, POOLED_WIDTH[head.cfg.pooling] * self.model.encoder.config.hidden_size), np.float32)
        return vectors.numpy()


def result_columns(result: Predictions) -> list[str]:
    return ["id", "prediction", *result.task.kind.probability_columns(result.task.num_outputs)]


def result_rows(result: Predictions) -> list[dict]:
    """One mapping per input: id, prediction (a number in the task's format), and probabilities."""
    rows = []
    for i, (ex_id, value) in enumerate(zip(result.ids, result.formatted())):
        row = {"id": ex_id, "prediction": json.loads(value)}
        if result.probabilities is not None:
            p = result.probabilities[i]
            row |= {"probability": float(p)} if p.ndim == 0 else {f"prob_{k}": float(v) for k, v in enumerate(p)}
        rows.append(row)
    return rows


def write_results(result: Predictions, out: IO[str], jsonl: bool) -> int:
    """CSV (id, prediction, prob_0..prob_K | probability) or JSONL (the same keys, probabilities as a list
    under `probabilities` for sst / cfimdb); returns the rows written."""
    if jsonl:
        rows = result_rows(result)
        for row in rows:
            probs = [row.pop(k) for k in list(row) if k.startswith("prob_")]
            out.write(json.dumps(row | ({"probabilities": probs} if probs else {})) + "\n")
        return len(rows)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result_columns(result))
    probs = result.probabilities
    for i, (ex_id, value) in enumerate(zip(result.ids, result.formatted())):
        writer.writerow([ex_id, value, *(() if probs is None else (f"{p:.6f}" for p in np.atleast_1d(probs[i])))])
    return len(result)

"""A trained run as a predictor: load it once, then score texts or pairs and embed sentences.

`Predictor` is what `minbert predict`, `minbert.load(RUN_DIR)` and `minbert bench` use. Texts are
encoded as each task's head wants them (one joint input for single sentences and cross-encoded pairs, two
for Siamese pairs), run in length-sorted batches in inference mode, and given back in input order:
predictions in the task's units, and probabilities for the classifiers (class probabilities for sst /
cfimdb, the paraphrase probability for para). Inputs of any length are taken as a stream, a chunk of
`CHUNK_ROWS` at a time (sorted by length inside the chunk), so memory is bounded by the chunk:
`predict_iter` / `encode_iter` yield each chunk's results, `predict` / `encode` join them.
`ResultWriter` writes results chunk by chunk as CSV or JSONL; `whole_file` makes them a file only once complete.
"""
from __future__ import annotations

import contextlib
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from . import writes
from .errors import ConfigError
from .schema import Config
from .data.batching import CHUNK_ROWS, chunks, encode_examples
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
        return [self.task.format_value(v) for v in self.predictions]

    @classmethod
    def joined(cls, parts: list["Predictions"]) -> "Predictions":
        """Consecutive chunks' results as one (at least one part)."""
        if len(parts) == 1:
            return parts[0]
        probs = None if parts[0].probabilities is None else np.concatenate([p.probabilities for p in parts])
        return cls(parts[0].task, [i for p in parts for i in p.ids], np.concatenate([p.outputs for p in parts]),
                   np.concatenate([p.predictions for p in parts]), probs)


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

    def predict(self, task: str, texts: Iterable[str] | Iterable[tuple[str, str]],
                progress: bool = False) -> Predictions:
        """Score texts (sst, cfimdb) or (text, text) pairs (para, sts): a list, or any iterable (read in chunks)."""
        return self._joined(self.task(task), self.predict_iter(task, texts, progress=progress))

    def predict_iter(self, task: str, texts: Iterable[str] | Iterable[tuple[str, str]], chunk_size: int = CHUNK_ROWS,
                     progress: bool = False) -> Iterator[Predictions]:
        """`predict` as a stream: the results of each `chunk_size` items as soon as they are scored (ids
        numbered 1, 2, ... over the whole input). The items are read as the results are asked for."""
        return self.predict_examples_iter(task, self._examples(self.task(task), texts), chunk_size, progress=progress)

    def predict_examples(self, task: str, examples: Iterable[Example], progress: bool = False) -> Predictions:
        return self._joined(self.task(task), self.predict_examples_iter(task, examples, progress=progress))

    def predict_examples_iter(self, task: str, examples: Iterable[Example], chunk_size: int = CHUNK_ROWS,
                              ready: Callable[[], bool] | None = None, progress: bool = False,
                              total: int | None = None) -> Iterator[Predictions]:
        """Each chunk's results in input order. `ready` (a stream's): cut a chunk short when the next example is
        not there yet, so a pipe's rows are answered as they come. `progress`: a bar over rows on standard error
        (when a terminal), out of `total` when known."""
        t = self.task(task)
        with _bar(progress, total) as bar:
            for chunk in chunks(examples, chunk_size, ready):
                yield self._score(t, chunk)
                bar.update(len(chunk))
            bar.total = bar.n  # the total was a line count: the bar ends full

    def encode(self, texts: Iterable[str], task: str | None = None, progress: bool = False) -> np.ndarray:
        """Sentence vectors (n, width) as the head of `task` (default: the run's first task) pools the encoder's
        token states (after its CNN block, if it has one; before a cosine head's projection)."""
        parts = list(self.encode_iter(texts, task, progress=progress))
        if not parts:
            head = self.model.head(self.task(task or self.tasks[0]).name)
            return np.zeros((0, POOLED_WIDTH[head.cfg.pooling] * self.model.encoder.config.hidden_size), np.float32)
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def encode_iter(self, texts: Iterable[str], task: str | None = None, chunk_size: int = CHUNK_ROWS,
                    progress: bool = False) -> Iterator[np.ndarray]:
        """`encode` as a stream: the vectors of each `chunk_size` texts, in input order (for example into a
        memory-mapped array, without holding the corpus)."""
        head = self.model.head(self.task(task or self.tasks[0]).name)
        examples = (Example(str(i), fields, None) for i, fields in self._items(texts, 1, "a text"))
        with _bar(progress, None) as bar:
            for chunk in chunks(examples, chunk_size):
                data = encode_examples(chunk, self.tokenizer, True)
                yield batched_outputs(self.model, lambda inputs: head.sentence_vector(self.model.encoder, inputs[0]),
                                      data, self.tokenizer, self.batch_size, self.device).numpy()
                bar.update(len(chunk))

    def _score(self, t: Task, examples: list[Example]) -> Predictions:
        data = encode_examples(examples, self.tokenizer, self.model.joint_input(t.name))
        outputs, preds = predict_set(self.model, t.name, data, self.tokenizer, self.batch_size, self.device)
        probs = t.kind.probabilities(outputs) if t.probability_columns() else None
        return Predictions(t, [e.id for e in examples], outputs, preds, probs)

    def _joined(self, t: Task, parts: Iterator[Predictions]) -> Predictions:
        done = list(parts)
        return Predictions.joined(done) if done else self._score(t, [])

    def _examples(self, t: Task, texts: Iterable) -> Iterator[Example]:
        what = "a text" if len(t.text_columns) == 1 else "a pair of texts"
        for i, fields in self._items(texts, len(t.text_columns), what, t.name):
            yield Example(str(i), fields, None)

    @staticmethod
    def _items(texts: Iterable, width: int, what: str, task: str | None = None) -> Iterator[tuple[int, tuple]]:
        """(1-based number, fields) of each item, checked as it is read: a string, or a tuple of `width` strings."""
        if isinstance(texts, str):
            raise ConfigError(f"expected a list (or any iterable) of texts, not one string: {texts[:40]!r}")
        for i, item in enumerate(texts, 1):
            fields = (item,) if isinstance(item, str) else tuple(item) if isinstance(item, (tuple, list)) else None
            if fields is None or len(fields) != width or not all(isinstance(f, str) for f in fields):
                raise ConfigError(f"{f'task {task} takes' if task else 'expected'} {what} per item; item {i} is {item!r}")
            yield i, fields


def _bar(progress: bool, total: int | None) -> tqdm:
    """A progress bar over rows, with rows/s, on standard error when it is a terminal."""
    return tqdm(total=total, unit="row", file=sys.stderr, disable=None if progress else True, smoothing=0.1)


def result_columns(result: Predictions) -> list[str]:
    return ["id", "prediction", *result.task.probability_columns()]


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


class ResultWriter:
    """Results written chunk after chunk, each flushed: CSV (id, prediction, prob_0..prob_K | probability;
    the header with the first chunk) or JSONL (the same keys, probabilities as a list under `probabilities`
    for sst / cfimdb)."""

    def __init__(self, out: IO[str], jsonl: bool):
        self.out, self.jsonl, self.rows = out, jsonl, 0
        self._csv = None

    def write(self, result: Predictions) -> int:
        """Write `result`'s rows; returns how many."""
        if self.jsonl:
            for row in result_rows(result):
                probs = [row.pop(k) for k in list(row) if k.startswith("prob_")]
                self.out.write(json.dumps(row | ({"probabilities": probs} if probs else {})) + "\n")
        else:
            if self._csv is None:
                self._csv = csv.writer(self.out, lineterminator="\n")
                self._csv.writerow(result_columns(result))
            probs = result.probabilities
            self._csv.writerows([ex_id, value, *(() if probs is None else (f"{p:.6f}" for p in np.atleast_1d(probs[i])))]
                                for i, (ex_id, value) in enumerate(zip(result.ids, result.formatted())))
        self.out.flush()
        self.rows += len(result)
        return len(result)


def write_results(result: Predictions, out: IO[str], jsonl: bool) -> int:
    """All of `result` as CSV or JSONL (see `ResultWriter`); returns the rows written."""
    return ResultWriter(out, jsonl).write(result)


@contextlib.contextmanager
def whole_file(path: Path) -> Iterator[IO[str]]:
    """A text file written as `PATH.part` and renamed to `path` when the block ends normally; on any error or
    interrupt (KeyboardInterrupt included) the part is removed, so a stopped run leaves no file at all."""
    with writes.atomic_file(path, "w", suffix=".part", encoding="utf-8", newline="") as f:
        yield f

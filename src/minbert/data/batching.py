"""From examples to padded batches: tokenise once (cached), bucket by length, pad each batch to its longest.

Length bucketing (sort within large random pools, then shuffle the batch order) keeps padding low
while the order of batches stays random, so training is not biased by length.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import torch

from ..tokenizer import Encoded, Tokenizer
from .readers import Example


@dataclass
class EncodedSet:
    """One task split, tokenised once. `inputs` holds one list of encodings per model input:
    [joint] for single sentences and cross-encoded pairs, [first, second] for Siamese pairs."""

    ids: list[str]
    inputs: list[list[Encoded]]
    labels: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> list[int]:
        return [sum(len(enc[i][0]) for enc in self.inputs) for i in range(len(self))]

    def batch(self, tokenizer: Tokenizer, index: Sequence[int]) -> dict:
        out = {"inputs": [tokenizer.pad([enc[i] for i in index]) for enc in self.inputs], "index": list(index)}
        if self.labels is not None:
            out["labels"] = self.labels[list(index)]
        return out


def to_device(inputs: list[dict[str, torch.Tensor]], device: torch.device | None) -> list[dict[str, torch.Tensor]]:
    """Move a batch's padded inputs to the model's device (a no-op on CPU)."""
    if device is None or device.type == "cpu":
        return inputs
    return [{k: v.pin_memory().to(device, non_blocking=True) for k, v in x.items()} for x in inputs]


def encode_examples(examples: list[Example], tokenizer: Tokenizer, joint: bool) -> EncodedSet:
    """Tokenise a split. `joint=True` encodes a pair as one `[CLS] a [SEP] b [SEP]` input."""
    columns = list(zip(*(ex.texts for ex in examples))) if examples else []
    if not columns:
        inputs: list[list[Encoded]] = [[]]
    elif len(columns) == 1:
        inputs = [tokenizer.encode(columns[0])]
    elif joint:
        inputs = [tokenizer.encode(columns[0], columns[1])]
    else:
        inputs = [tokenizer.encode(columns[0]), tokenizer.encode(columns[1])]
    labels = None
    if examples and examples[0].label is not None:
        labels = torch.tensor([ex.label for ex in examples], dtype=torch.float32)
    return EncodedSet([ex.id for ex in examples], inputs, labels)


T = TypeVar("T")
CHUNK_ROWS = 4096  # rows of a stream read, tokenised and scored together (length-sorted inside): memory is bounded by it


def chunks(items: Iterable[T], size: int, ready: Callable[[], bool] | None = None) -> Iterator[list[T]]:
    """Consecutive lists of up to `size` items, for scoring a stream in bounded memory. With `ready`, a list is
    also cut short when the next item is not there yet (`ready()` False), so a slow stream's items go on
    without waiting for a full list."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size or (ready is not None and not ready()):
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def bucketed_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator,
                     pool_batches: int = 50) -> list[list[int]]:
    """Shuffle, sort by length inside pools of `pool_batches` batches, cut batches, shuffle the batches."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    pool = batch_size * pool_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: lengths[i])
        batches.extend(chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size))
    perm = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in perm]


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Plain random batches (no length bucketing)."""
    order = torch.randperm(n, generator=generator).tolist()
    return [order[j:j + batch_size] for j in range(0, n, batch_size)]


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Deterministic batches of similar length, for evaluation (results are put back in file order)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[j:j + batch_size] for j in range(0, len(order), batch_size)]


class BatchStream:
    """An endless stream of training batches of one task; each pass over the data is reshuffled."""

    def __init__(self, data: EncodedSet, tokenizer: Tokenizer, batch_size: int, generator: torch.Generator,
                 bucket: bool = True):
        self.data, self.tokenizer, self.batch_size, self.generator = data, tokenizer, batch_size, generator
        self.bucket = bucket
        self._lengths = data.lengths()
        self._queue: list[list[int]] = []
        self.passes_started = 0  # how many times the data has been (re)shuffled

    def batches_per_pass(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def _refill(self) -> None:
        if self.bucket:
            self._queue = bucketed_batches(self._lengths, self.batch_size, self.generator)
        else:
            self._queue = shuffled_batches(len(self.data), self.batch_size, self.generator)
        self._queue.reverse()  # pop() from the end takes them in order

    def next(self, share: Callable[[list[int]], tuple[list[int], float]] | None = None) -> dict:
        """The next batch; with `share` (data-parallel), this process's rows of it and their loss weight."""
        if not self._queue:
            self.passes_started += 1
            self._refill()
        index = self._queue.pop()
        rows, weight = share(index) if share else (index, 1.0)
        return {**self.data.batch(self.tokenizer, rows), "weight": weight, "global_size": len(index)}

    def state(self) -> dict:
        """The position in the current pass (the batches still to come), for exact resume."""
        return {"queue": self._queue, "passes_started": self.passes_started}

    def load_state(self, state: dict) -> None:
        bad = [i for b in state["queue"] for i in b if not 0 <= i < len(self.data)]
        if bad:
            raise ValueError(f"row {bad[0]} of a saved batch is outside the {len(self.data)} training rows")
        self._queue = [list(b) for b in state["queue"]]
        self.passes_started = state["passes_started"]

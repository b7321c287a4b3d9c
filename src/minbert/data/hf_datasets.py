"""Task rows from the Hugging Face `datasets` library (the optional extra `minbert[datasets]`): a Hub dataset by
name and configuration, a local loading script or data folder, or a folder that `save_to_disk` wrote.

`datasets` keeps its own cache and honours `HF_DATASETS_OFFLINE=1` (and `HF_HUB_OFFLINE=1`); nothing here fetches
on its own. A label column of `ClassLabel` type is read as its class names, so a task declares the names
(`classes: [entailment, not_entailment]`) as it would for a file. Rows then go through the same checks as a file's
(`readers.record_rows`): a missing or empty text or label is a counted skip naming the split and row.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from ..errors import DataError


def _library():
    try:
        import datasets
    except ImportError:
        raise DataError("a task's `datasets` source needs the datasets library: pip install 'minbert[datasets]'") \
            from None
    return datasets


def load_split(source, split: str):
    """One split of a `DatasetsSource` (tasks.py) as a `datasets.Dataset`; any failure is a `DataError`."""
    datasets = _library()
    where = f"{source.path}{f' ({source.name})' if source.name else ''}, split {split!r}"
    folder = Path(source.path).expanduser()
    try:
        if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
            saved = datasets.load_from_disk(str(folder))
            if isinstance(saved, datasets.DatasetDict):
                if split not in saved:
                    raise DataError(f"{where}: no such split (the folder has {sorted(saved)})")
                return saved[split]
            return saved
        return datasets.load_dataset(source.path, source.name, split=split, revision=source.revision)
    except DataError:
        raise
    except Exception as e:  # datasets raises many types (FileNotFoundError, ValueError, ConnectionError, ...)
        why = " ".join(str(e).split())[:300]
        raise DataError(f"{where}: cannot load it with datasets ({type(e).__name__}: {why})") from None


def dataset_records(source, split: str) -> Iterator[tuple[int, Any]]:
    """(row number from 1, the row as a mapping) for each row; ClassLabel values as their names."""
    data = load_split(source, split)
    names = {k: f.names for k, f in data.features.items() if type(f).__name__ == "ClassLabel"}
    for i, row in enumerate(data, 1):
        for k, labels in names.items():
            v = row.get(k)
            if isinstance(v, int) and 0 <= v < len(labels):
                row[k] = labels[v]
        yield i, row


def check_dataset(source, split: str, columns: tuple[str, ...]) -> None:
    """The split loads and has the columns."""
    data = load_split(source, split)
    absent = [c for c in columns if c not in data.column_names]
    if absent:
        raise DataError(f"{source.path} split {split!r}: missing column(s) {absent} (found {data.column_names})")

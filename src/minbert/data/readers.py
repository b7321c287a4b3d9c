"""Readers for a task's files — CSV, TSV (with or without a header line, quotes as quotes or as text) and JSON
lines — into typed examples plus a report of every bad row (data/inputs.py reads files to predict on with them).

Columns are found by header name, so a stray extra column (the SST/CFIMDB test-student files) is
reported and ignored. A bad row is never dropped silently: it is listed with file, line and reason,
skipped (the count goes to the run log), or raises `DataError` in strict mode. A missing file or a
header without the needed columns is a `DataError` before any training starts.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..errors import DataError  # noqa: F401  (re-exported: raised here)

csv.field_size_limit(1 << 26)  # a 100,000-character sentence is long text, not a broken file


class SeenIds:
    """The ids met so far in a file, for the duplicate-id check, in about 16 bytes each however long they are:
    a set of their 64-bit hashes (Python's string hash), open addressing in a numpy array kept at most half
    full. A million ids cost 16-32 MB instead of ~125 MB as a set of strings, so reading a file stays near
    constant memory. Two different ids share a hash with probability about n^2 / 2^65 (3e-8 for a million):
    the later one would then be reported as a duplicate."""

    def __init__(self) -> None:
        self.table = np.zeros(1 << 10, np.uint64)  # 0: an empty slot
        self.count = 0

    @staticmethod
    def _key(ex_id: str) -> int:
        return (hash(ex_id) & 0xFFFFFFFFFFFFFFFF) or 1

    def _slot(self, key: int) -> int:
        """The slot that holds `key`, or the empty slot where it would go (linear probing)."""
        table, mask = self.table, len(self.table) - 1
        i = key & mask
        while True:
            v = int(table[i])
            if v == 0 or v == key:
                return i
            i = (i + 1) & mask

    def __contains__(self, ex_id: str) -> bool:
        return int(self.table[self._slot(self._key(ex_id))]) != 0

    def add(self, ex_id: str) -> None:
        key = self._key(ex_id)
        i = self._slot(key)
        if int(self.table[i]) == 0:
            self.table[i] = key
            self.count += 1
            if 2 * self.count > len(self.table):
                self._grow()

    def _grow(self) -> None:
        keys = self.table[self.table != 0]
        self.table = np.zeros(2 * len(self.table), np.uint64)
        for key in keys:  # numpy scalars one at a time: no list of a million Python ints at the peak
            self.table[self._slot(int(key))] = key


@dataclass(frozen=True)
class Example:
    id: str
    texts: tuple[str, ...]  # one sentence, or a pair
    label: float | int | None  # None in unlabeled (test-student) files


@dataclass(frozen=True)
class BadRow:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class ReadReport:
    file: str
    rows: int = 0  # data rows in the file, bad ones included
    bad: list[BadRow] = field(default_factory=list)  # the skipped rows (handed to `on_bad` instead, when set)
    notes: list[str] = field(default_factory=list)
    skipped: int = 0
    on_bad: Callable[[BadRow], None] | None = None  # a stream's reader: told of each bad row, which is not kept

    @property
    def kept(self) -> int:
        return self.rows - self.skipped

    def add(self, line: int, reason: str | None, strict: bool) -> bool:
        """Record row `line`'s problem, if any: a `DataError` in strict mode, else a counted skip.
        True when the row is good."""
        if reason is None:
            return True
        bad = BadRow(self.file, line, reason)
        if strict:
            raise DataError(str(bad))
        self.skipped += 1
        if self.on_bad is None:
            self.bad.append(bad)
        else:
            self.on_bad(bad)
        return False

    def counts(self) -> str:
        return f"{self.file}: {self.rows} rows, {self.kept} kept, {self.skipped} skipped"

    def summary(self) -> str:
        return "\n".join([self.counts(), *(f"  note: {n}" for n in self.notes), *(f"  skipped {b}" for b in self.bad)])


LabelParser = Callable[[str], "int | float"]


def int_label(low: int, high: int) -> LabelParser:
    """Class index in [low, high]; accepts "3" and "3.0"."""
    def parse(raw: str) -> int:
        value = float(raw)
        if not value.is_integer() or not low <= value <= high:
            raise ValueError(f"out of range (expected an integer {low}-{high})")
        return int(value)
    return parse


def float_label(low: float, high: float) -> LabelParser:
    def parse(raw: str) -> float:
        value = float(raw)
        if math.isnan(value) or not low <= value <= high:
            raise ValueError(f"out of range (expected {low}-{high})")
        return value
    return parse


def class_label(index: dict[str, int], shown: list[str]) -> LabelParser:
    """A label as its class index, looked up by its text (numbers by value: "1" and "1.0" alike)."""
    def parse(raw: str) -> int:
        key = raw
        try:
            key = repr(float(raw))
        except ValueError:
            pass
        if key not in index and raw not in index:
            raise ValueError(f"not a declared class (expected one of {shown})")
        return index[key] if key in index else index[raw]
    return parse


def read_examples(path: str | Path, text_columns: tuple[str, ...], label_column: str | None,
                  parse_label: LabelParser | None = None, strict: bool = False) -> tuple[list[Example], ReadReport]:
    """Read one course file. `label_column=None` reads an unlabeled file."""
    path = Path(path)
    return read_table(read_text(path, DATA_DIR_HINT), str(path), "\t", text_columns, label_column, parse_label, strict)


def read_table(text: str, name: str, delimiter: str, text_columns: tuple[str, ...], label_column: str | None,
               parse_label: LabelParser | None = None, strict: bool = False,
               id_required: bool = True, **layout) -> tuple[list[Example], ReadReport]:
    """Rows of a delimited text with a header, columns found by name. With `id_required=False` an absent
    `id` column is allowed and a row's id is its line number. `layout`: see `table_rows`."""
    rows, report = table_rows(text.removeprefix("\ufeff").splitlines(keepends=True), name, delimiter, text_columns,
                              label_column, parse_label, strict, id_required, **layout)
    return list(rows), report


def table_rows(lines: Iterable[str], name: str, delimiter: str, text_columns: tuple[str, ...],
               label_column: str | None, parse_label: LabelParser | None = None, strict: bool = False,
               id_required: bool = True, report: ReadReport | None = None, id_column: str = "id",
               columns: list[str] | None = None, quoting: bool = True) -> tuple[Iterator[Example], ReadReport]:
    """`read_table` as a stream: the header is read and checked now (a `DataError` here), the rows as the
    returned iterator is consumed, each bad one recorded in `report` as it is met. `lines` keep their endings.
    `id_column`: the column of the ids; `columns`: the columns' names of a file without a header line;
    `quoting` False: a double quote is text, not a quote (GLUE's files)."""
    report = report or ReadReport(file=name)
    reader = csv.reader(lines, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE)
    header = list(columns) if columns else next(reader, None)
    if header is None:
        raise DataError(f"{name}: empty file (no header row)")
    header = [h.strip() for h in header]
    has_id = id_required or id_column in header
    if not has_id and id_column != "id":
        report.notes.append(f"no {id_column} column: rows are numbered by their line")
    needed = (*((id_column,) if has_id else ()), *text_columns, *((label_column,) if label_column else ()))
    absent = [c for c in needed if c not in header]
    if absent:
        raise DataError(f"{name}:1: wrong header: missing column(s) {absent}; expected {list(needed)} (found {header})")
    extra = [h for h in header if h not in needed and h != ""]
    if extra and not columns:
        report.notes.append(f"extra column(s) {extra} besides {list(needed)}: ignored")
    col = {c: header.index(c) for c in needed}
    id_at = col[id_column] if has_id else len(header)

    def rows() -> Iterator[Example]:
        seen_ids = SeenIds()
        end = reader.line_num
        for row in reader:
            line, end = end + 1, reader.line_num  # a row may span several physical lines
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line is no row
            report.rows += 1
            if not has_id:
                row = [*row, str(line)]
            reason = _row_problem(row, header, col, id_at, text_columns, label_column, seen_ids if has_id else None,
                                  extra_fields=int(not has_id))
            if reason is not None and end > line:
                reason += f" (an unbalanced quote joined lines {line}-{end})"
            label = None
            if reason is None and label_column:
                label, reason = _parsed_label(row[col[label_column]].strip(), label_column, parse_label)
            if not report.add(line, reason, strict):
                continue
            ex_id = row[id_at].strip()
            if has_id:
                seen_ids.add(ex_id)
            yield Example(ex_id, tuple(row[col[c]].strip() for c in text_columns), label)

    return rows(), report


def _parsed_label(raw: str, column: str, parse_label: LabelParser) -> tuple[Any, str | None]:
    """(the label, None), or (None, why it cannot be parsed)."""
    try:
        return parse_label(raw), None
    except ValueError as e:
        why = str(e) if "range" in str(e) or "declared" in str(e) else "not a number"
        return None, f"{column} {raw!r}: {why}"


def record_rows(records: Iterable[tuple[int, Any]], report: ReadReport, text_columns: tuple[str, ...],
                label_column: str | None = None, parse_label: LabelParser | None = None, strict: bool = False,
                id_column: str | None = "id") -> Iterator[Example]:
    """Examples from (line, mapping) records (JSON lines, a `datasets` split): the text keys, the label key when
    `label_column`, the id from `id_column` when the record has it (else the line number). A record that is not a
    mapping (a `str`: why it could not be parsed) or lacks a key is a counted skip, or a `DataError` when strict."""
    seen = SeenIds()
    for line, obj in records:
        report.rows += 1
        ex_id, reason, label = str(line), None, None
        if isinstance(obj, str):
            reason = obj
        elif not isinstance(obj, dict):
            reason = f"expected a JSON object, found {type(obj).__name__}"
        if reason is None:
            keys = (*text_columns, *((label_column,) if label_column else ()))
            absent = [c for c in keys if c not in obj]
            wrong = [c for c in text_columns if c not in absent and not isinstance(obj[c], str)]
            if absent:
                reason = f"missing key(s) {absent}"
            elif wrong:
                reason = f"{wrong[0]}: expected a string, found {type(obj[wrong[0]]).__name__}"
            else:
                reason = next((f"empty {c}" for c in text_columns if not obj[c].strip()), None)
        if reason is None and label_column:
            raw = obj[label_column]
            raw = raw.strip() if isinstance(raw, str) else "" if raw is None else str(raw).lower() if isinstance(raw, bool) \
                else str(raw)  # a JSON true / false is the label "true" / "false"
            label, reason = _parsed_label(raw, label_column, parse_label) if raw else (None, f"empty {label_column}")
        if reason is None and id_column and id_column in obj and obj[id_column] is not None:
            ex_id = str(obj[id_column]).strip()
            reason = "empty id" if not ex_id else f"duplicate id {ex_id!r}" if ex_id in seen else None
        if report.add(line, reason, strict):
            seen.add(ex_id)  # a line number too: a later row may give it as its id
            yield Example(ex_id, tuple(obj[c].strip() for c in text_columns), label)


def json_records(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    """(line number, the line's JSON value, or why it is not valid JSON) for each non-blank line."""
    for line, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            yield line, json.loads(raw)
        except json.JSONDecodeError as e:
            yield line, f"not valid JSON ({e.msg} at column {e.colno})"


def file_format(spec_format: str | None, path: Path) -> str:
    """A task file's format: declared, or from its extension (.csv, .tsv, .jsonl)."""
    if spec_format:
        return spec_format
    fmt = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: cannot tell the format from the extension {path.suffix!r}; declare the task's "
                        "format: csv, tsv or jsonl")
    return fmt


def read_source_examples(spec, path: Path, split: str, datasets_split: str | None, label_column: str | None,
                         parse_label: LabelParser | None, strict: bool = False) -> tuple[list[Example], ReadReport]:
    """One split of a task (its `TaskSpec`): a CSV / TSV / JSONL file, or a `datasets` split."""
    if spec.datasets is not None:
        from .hf_datasets import dataset_records

        report = ReadReport(file=str(path))
        rows = record_rows(dataset_records(spec.datasets, datasets_split), report, tuple(spec.text), label_column,
                           parse_label, strict, spec.id)
        return list(rows), report
    fmt = file_format(spec.format, path)
    text = read_text(path, DATA_DIR_HINT if spec.dir is None else "")
    if fmt == "jsonl":
        report = ReadReport(file=str(path))
        rows = record_rows(json_records(text.removeprefix("\ufeff").splitlines()), report, tuple(spec.text),
                           label_column, parse_label, strict, spec.id)
        return list(rows), report
    headerless = split in (spec.headerless or ())
    examples, report = read_table(text, str(path), "\t" if fmt == "tsv" else ",", tuple(spec.text), label_column,
                                  parse_label, strict, id_required=spec.id_required, id_column=spec.id,
                                  columns=spec.columns if headerless else None, quoting=spec.quoting == "csv")
    return examples, report


def check_source(spec, path: Path, split: str, datasets_split: str | None, label_column: str | None) -> None:
    """What `read_source_examples` needs before the rows: the file there, UTF-8, its header (or first JSON line)
    naming the columns; a `datasets` split that loads."""
    if spec.datasets is not None:
        from .hf_datasets import check_dataset

        check_dataset(spec.datasets, datasets_split, (*spec.text, *((label_column,) if label_column else ())))
        return
    fmt = file_format(spec.format, path)
    text = read_text(path, DATA_DIR_HINT if spec.dir is None else "")
    needed = (*((spec.id,) if spec.id_required else ()), *spec.text, *((label_column,) if label_column else ()))
    if fmt == "jsonl":
        first = next(json_records(text.removeprefix("\ufeff").splitlines()), None)
        if first is None:
            raise DataError(f"{path}: empty file (no rows)")
        line, obj = first
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{line}: expected a JSON object a line, found "
                            f"{obj if isinstance(obj, str) else type(obj).__name__}")
        absent = [c for c in needed if c not in obj]
        if absent:
            raise DataError(f"{path}:{line}: missing key(s) {absent} (found {list(obj)})")
        return
    if split in (spec.headerless or ()):
        return
    delimiter = "\t" if fmt == "tsv" else ","
    first = text.removeprefix("\ufeff").splitlines(keepends=True)[:1]
    quoting = csv.QUOTE_MINIMAL if spec.quoting == "csv" else csv.QUOTE_NONE
    check_header(path, next(csv.reader(first, delimiter=delimiter, quoting=quoting), None), needed)


DATA_DIR_HINT = " (set the data directory with --data-dir or MINBERT_DATA_DIR)"


def read_text(path: Path, hint: str = "") -> str:
    """A data file's text; a missing or unreadable file, or bytes that are not UTF-8, is a `DataError`
    (`hint`: what to do about a missing file)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found{hint}")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start})") from e


def check_header(path: Path, header: list[str] | None, needed: tuple[str, ...]) -> list[str]:
    """The stripped header row, which must name every `needed` column."""
    if header is None:
        raise DataError(f"{path}: empty file (no header row)")
    header = [h.strip() for h in header]
    absent = [c for c in needed if c not in header]
    if absent:
        raise DataError(f"{path}:1: wrong header: missing column(s) {absent}; expected {list(needed)} (found {header})")
    return header


def _row_problem(row: list[str], header: list[str], col: dict[str, int], id_at: int, text_columns: tuple[str, ...],
                 label_column: str | None, seen_ids: SeenIds | None, extra_fields: int = 0) -> str | None:
    """Why a row cannot be used, or None; `seen_ids` None: ids are line numbers, unique without a check."""
    if len(row) - extra_fields != len(header):
        return f"expected {len(header)} columns, found {len(row) - extra_fields}"
    ex_id = row[id_at].strip()
    if not ex_id:
        return "empty id"
    if seen_ids is not None and ex_id in seen_ids:
        return f"duplicate id {ex_id!r}"
    for c in text_columns:
        if not row[col[c]].strip():
            hint = " (an unbalanced quote may have swallowed it)" if any(f.startswith('"') for f in row) else ""
            return f"empty {c}{hint}"
    if label_column and not row[col[label_column]].strip():
        return f"empty {label_column}"
    return None

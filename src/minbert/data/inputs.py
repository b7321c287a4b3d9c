"""Texts to predict on, from a user's file or standard input, read as a stream with the training readers'
bad-row report.

- CSV / TSV: the delimiter from the extension (.tsv tab, .csv comma) unless the header line says
  otherwise (a header with a tab is tab-separated, so the course's tab-separated .csv files read too);
  columns found by header name (`sentence`, or `sentence1` and `sentence2`); `id` kept when present,
  else a row's id is its line number (the header is line 1); other columns are noted and ignored.
- JSONL (`.jsonl`): one object a line with the same keys (the line number is the id when `id` is absent).
- `-`: standard input, one text (or one tab-separated pair) a line, its line number as the id.
A bad row (missing column or key, empty text, wrong number of fields, a line that is not a JSON object)
is recorded in the report as `file:line: reason` and skipped, or is a `DataError` with `strict`.

`open_inputs` reads and checks the header at once (a wrong file fails before a model is loaded) and the
rows only as they are consumed, so memory does not grow with the file. `Inputs.ready()` says whether the
next line can be had without waiting: a chunk of a pipe's rows is scored as soon as the writer pauses.
"""
from __future__ import annotations

import itertools
import os
import select
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

from ..errors import DataError
from .readers import Example, ReadReport, json_records, record_rows, table_rows

STDIN = "-"
STDIN_NAME = "<stdin>"


@dataclass
class Inputs:
    """A user's rows as a stream of unlabeled examples (iterate once), and the report filled as they are read."""

    rows: Iterator[Example]
    report: ReadReport
    ready: Callable[[], bool]  # whether the next line is there without waiting (always, for a regular file)
    size_hint: Callable[[], int | None]  # the rows to expect, counted cheaply (a file's lines), or None

    def __iter__(self) -> Iterator[Example]:
        return self.rows


def open_inputs(source: str | Path, text_columns: tuple[str, ...], strict: bool = False,
                stdin: IO | None = None, id_column: str = "id") -> Inputs:
    """The rows of `source` (a path, or `-` for standard input: `stdin`, default `sys.stdin`). The header
    (CSV / TSV) is read and checked here; rows are read as the result is iterated. `id_column`: the task's id
    column (kept when the file has it)."""
    if str(source) == STDIN:
        lines = LineReader.of_stream(stdin if stdin is not None else sys.stdin, STDIN_NAME)
        report = ReadReport(file=STDIN_NAME)
        return Inputs(_line_rows(lines, report, text_columns, strict), report, lines.ready, lambda: None)
    path = Path(source)
    lines = LineReader.of_file(path)
    if path.suffix.lower() == ".jsonl":
        report = ReadReport(file=str(path))
        return Inputs(record_rows(json_records(lines), report, text_columns, strict=strict, id_column=id_column),
                      report, lines.ready,
                      lambda: count_lines(path))
    header = next(iter(lines), "")  # the same pass goes on below
    rows, report = table_rows(itertools.chain([header], lines), str(path), delimiter_of(path, header), text_columns,
                              None, strict=strict, id_required=False, id_column=id_column)
    return Inputs(rows, report, lines.ready, lambda: max(count_lines(path) - 1, 0))


def read_inputs(source: str | Path, text_columns: tuple[str, ...], strict: bool = False,
                stdin: IO | None = None, id_column: str = "id") -> tuple[list[Example], ReadReport]:
    """All the rows of `source` at once (a list), and the report."""
    inputs = open_inputs(source, text_columns, strict, stdin, id_column)
    return list(inputs), inputs.report


def delimiter_of(path: Path, header: str) -> str:
    if "\t" in header:
        return "\t"
    if "," in header:
        return ","
    return "\t" if path.suffix.lower() == ".tsv" else ","


def count_lines(path: Path) -> int:
    """Lines in a file (a last line without its newline counts), read in blocks: a cheap size for a progress bar."""
    n, last = 0, b"\n"
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            n, last = n + block.count(b"\n"), block[-1:]
    return n + (last != b"\n")


class LineReader:
    """The lines of a file or of standard input, decoded as UTF-8 one at a time (a byte that is not UTF-8 is a
    `DataError` naming its line and offset; a byte-order mark at the start is dropped). Read straight from the
    file descriptor in blocks, so that `ready()` can ask whether a whole line is there without blocking.
    A stream with no descriptor (a `StringIO`) is read as it is, always ready."""

    BLOCK = 1 << 16

    def __init__(self, fd: int | None, name: str, text: Iterable[str] | None = None, close: bool = False):
        self.fd, self.name, self.text, self.close_fd = fd, name, text, close
        self.buffer, self.pos, self.eof = b"", 0, False
        self._lines = self._decoded()  # one pass: iterating again goes on where the last one stopped

    @classmethod
    def of_file(cls, path: Path) -> "LineReader":
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        try:
            return cls(os.open(path, os.O_RDONLY), str(path), close=True)
        except OSError as e:
            raise DataError(f"{path}: cannot read ({e.strerror or e})") from e

    @classmethod
    def of_stream(cls, stream: IO, name: str) -> "LineReader":
        try:
            return cls(stream.fileno(), name)
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
            return cls(None, name, text=stream)

    def _fill(self, wait: bool) -> None:
        """Append what the descriptor has (waiting for it when `wait`) to the unread part of the buffer."""
        if self.eof or (not wait and not select.select([self.fd], [], [], 0)[0]):
            return
        data = os.read(self.fd, self.BLOCK)
        self.buffer, self.pos = self.buffer[self.pos:] + data, 0
        if not data:
            self.eof = True
            if self.close_fd:
                os.close(self.fd)

    def ready(self) -> bool:
        """Whether the next line (or the end of input) can be read without waiting."""
        if self.fd is None or self.eof or self.buffer.find(b"\n", self.pos) >= 0:
            return True
        self._fill(wait=False)
        return self.eof or self.buffer.find(b"\n", self.pos) >= 0

    def __iter__(self) -> Iterator[str]:
        return self._lines

    def _decoded(self) -> Iterator[str]:
        if self.fd is None:
            for line, text in enumerate(self.text, 1):
                yield text.removeprefix("\ufeff") if line == 1 else text
            return
        line, offset = 0, 0  # the line's number and its first byte's offset in the input
        while True:
            end = self.buffer.find(b"\n", self.pos)
            if end < 0 and not self.eof:
                self._fill(wait=True)
                continue
            if end < 0 and self.pos == len(self.buffer):
                return
            end = len(self.buffer) if end < 0 else end + 1
            raw, start, self.pos = self.buffer[self.pos:end], self.pos, end
            line += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{self.name}:{line}: not UTF-8 text (byte {raw[e.start]:#04x} at offset "
                                f"{offset + e.start})") from e
            offset += end - start
            yield text.removeprefix("\ufeff") if line == 1 else text

    def __del__(self) -> None:
        if self.close_fd and not self.eof and self.fd is not None:
            os.close(self.fd)


def _line_rows(lines: Iterable[str], report: ReadReport, text_columns: tuple[str, ...],
               strict: bool) -> Iterator[Example]:
    """One example a line (its id the line number): a text, or a pair separated by a tab; blank lines are no rows."""
    for line, raw in enumerate(lines, 1):
        raw = raw.rstrip("\r\n")
        if not raw.strip():
            continue
        report.rows += 1
        fields = raw.split("\t")
        reason = None
        if len(fields) != len(text_columns):
            reason = (f"expected {len(text_columns)} tab-separated field(s) "
                      f"({', '.join(text_columns)}), found {len(fields)}")
        else:
            reason = _empty_text(dict(zip(text_columns, fields)), text_columns)
        if report.add(line, reason, strict):
            yield Example(str(line), tuple(f.strip() for f in fields), None)


def _empty_text(row: dict, text_columns: tuple[str, ...]) -> str | None:
    for c in text_columns:
        if not row[c].strip():
            return f"empty {c}"
    return None


def no_rows_error(report: ReadReport) -> DataError:
    return DataError(f"{report.file}: no usable rows" + (f" ({report.skipped} skipped)" if report.skipped else ""))

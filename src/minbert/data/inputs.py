"""Texts to predict on, from a user's file or standard input, with the training readers' bad-row report.

- CSV / TSV: the delimiter from the extension (.tsv tab, .csv comma) unless the header line says
  otherwise (a header with a tab is tab-separated, so the course's tab-separated .csv files read too);
  columns found by header name (`sentence`, or `sentence1` and `sentence2`); `id` kept when present,
  else a row's id is its line number (the header is line 1); other columns are noted and ignored.
- JSONL (`.jsonl`): one object a line with the same keys (the line number is the id when `id` is absent).
- `-`: standard input, one text (or one tab-separated pair) a line, its line number as the id.
A bad row (missing column or key, empty text, wrong number of fields, a line that is not a JSON object)
is listed as `file:line: reason` and skipped, or is a `DataError` with `strict`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .readers import DataError, Example, ReadReport, read_table, read_text

STDIN = "-"


def read_inputs(source: str | Path, text_columns: tuple[str, ...], strict: bool = False,
                stdin_text: str | None = None) -> tuple[list[Example], ReadReport]:
    """The rows of `source` (a path, or `-` for standard input) as unlabeled examples, and the report."""
    if str(source) == STDIN:
        text = sys.stdin.read() if stdin_text is None else stdin_text
        return read_lines(text, "<stdin>", text_columns, strict)
    path = Path(source)
    text = read_text(path)
    if path.suffix.lower() == ".jsonl":
        return read_jsonl(text, str(path), text_columns, strict)
    return read_table(text, str(path), delimiter_of(path, text), text_columns, None, strict=strict,
                      id_required=False)


def delimiter_of(path: Path, text: str) -> str:
    header = text.removeprefix("\ufeff").partition("\n")[0]
    if "\t" in header:
        return "\t"
    if "," in header:
        return ","
    return "\t" if path.suffix.lower() == ".tsv" else ","


def read_lines(text: str, name: str, text_columns: tuple[str, ...], strict: bool) -> tuple[list[Example], ReadReport]:
    """One example a line (its id the line number): a text, or a pair separated by a tab; blank lines are no rows."""
    report = ReadReport(file=name)
    examples = []
    for line, raw in enumerate(text.splitlines(), 1):
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
            examples.append(Example(str(line), tuple(f.strip() for f in fields), None))
    return examples, report


def read_jsonl(text: str, name: str, text_columns: tuple[str, ...], strict: bool) -> tuple[list[Example], ReadReport]:
    """One JSON object a line with the task's text keys and, optionally, `id`."""
    report = ReadReport(file=name)
    examples = []
    seen: set[str] = set()
    for line, raw in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        if not raw.strip():
            continue
        report.rows += 1
        ex_id, reason = str(line), None
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            obj, reason = None, f"not valid JSON ({e.msg} at column {e.colno})"
        if reason is None and not isinstance(obj, dict):
            reason = f"expected a JSON object, found {type(obj).__name__}"
        if reason is None:
            absent = [c for c in text_columns if c not in obj]
            wrong = [c for c in text_columns if c in obj and not isinstance(obj[c], str)]
            if absent:
                reason = f"missing key(s) {absent}"
            elif wrong:
                reason = f"{wrong[0]}: expected a string, found {type(obj[wrong[0]]).__name__}"
            else:
                reason = _empty_text(obj, text_columns)
        if reason is None and "id" in obj:
            ex_id = str(obj["id"]).strip()
            reason = "empty id" if not ex_id else f"duplicate id {ex_id!r}" if ex_id in seen else None
        if report.add(line, reason, strict):
            seen.add(ex_id)
            examples.append(Example(ex_id, tuple(obj[c].strip() for c in text_columns), None))
    return examples, report


def _empty_text(row: dict, text_columns: tuple[str, ...]) -> str | None:
    for c in text_columns:
        if not row[c].strip():
            return f"empty {c}"
    return None


def require_rows(examples: list[Example], report: ReadReport) -> None:
    if not examples:
        raise DataError(f"{report.file}: no usable rows" + (f" ({len(report.bad)} skipped)" if report.bad else ""))

"""Property-based fuzzing (hypothesis) of the readers and the tokenizer on arbitrary text and rows.

Readers: any file content raises nothing but `DataError`, and every row that is valid by an independent
definition is read back exactly. Tokenizer: any text or pair gives ids inside the vocabulary, framed by
[CLS] ... [SEP], never longer than max_length. `MINBERT_FUZZ=N` sets the examples per property (default 150).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minbert import Tokenizer
from minbert.data.readers import DataError, int_label, read_examples

FUZZ = settings(max_examples=int(os.environ.get("MINBERT_FUZZ", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

field_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
plain_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp"),
                                   exclude_characters='"\t\r\n\x0b\x0c\x1c\x1d\x1e\x85'), max_size=30)
label_text = st.one_of(st.sampled_from(["0", "1", "2", "3", "4", "5", "4.0", "-1", "nan", "inf", "", "x", "2.5"]),
                       plain_text)
row = st.tuples(plain_text, plain_text, plain_text, label_text)  # index, id, sentence, sentiment


def is_valid(r: tuple[str, ...], seen: set[str]) -> bool:
    """A row the reader must keep, by the README's rules, decided without the reader's code."""
    _, ex_id, sentence, label = (f.strip() for f in r)
    if not ex_id or ex_id in seen or not sentence:
        return False
    try:
        value = float(label)
    except ValueError:
        return False
    return value in (0.0, 1.0, 2.0, 3.0, 4.0)


def write(lines: list[str]) -> Path:
    fd, name = tempfile.mkstemp(suffix=".csv")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write("\n".join(lines) + "\n")
    return Path(name)


@FUZZ
@given(st.lists(row, max_size=12))
def test_reader_keeps_exactly_the_valid_rows(rows):
    path = write(["\tid\tsentence\tsentiment", *("\t".join(r) for r in rows)])
    try:
        examples, report = read_examples(path, ("sentence",), "sentiment", int_label(0, 4))
    finally:
        path.unlink()
    seen: set[str] = set()
    expected = []
    for r in rows:
        if not "".join(r).strip():
            continue  # a blank line is no row
        if is_valid(r, seen):
            seen.add(r[1].strip())
            expected.append((r[1].strip(), r[2].strip(), int(float(r[3]))))
    assert [(e.id, e.texts[0], e.label) for e in examples] == expected
    assert report.rows == len(examples) + len(report.bad)


@FUZZ
@given(st.lists(st.lists(field_text, max_size=6), max_size=8), st.booleans())
def test_reader_never_raises_other_than_data_error(rows, with_header):
    lines = (["\tid\tsentence\tsentiment"] if with_header else []) + ["\t".join(r) for r in rows]
    path = write(lines)
    try:
        examples, report = read_examples(path, ("sentence",), "sentiment", int_label(0, 4))
        assert len(examples) <= report.rows
        assert all(e.id and e.texts[0] and e.label in range(5) for e in examples)
    except DataError as e:
        assert str(path) in str(e)
    finally:
        path.unlink()


@FUZZ
@given(st.binary(max_size=200))
def test_reader_on_arbitrary_bytes(data):
    fd, name = tempfile.mkstemp(suffix=".csv")
    os.write(fd, b"\tid\tsentence\tsentiment\n" + data)
    os.close(fd)
    try:
        read_examples(Path(name), ("sentence",), "sentiment", int_label(0, 4))
    except DataError as e:
        assert name in str(e)
    finally:
        os.unlink(name)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.from_pretrained(max_length=32)


@FUZZ
@given(text=st.text(max_size=300), text2=st.one_of(st.none(), st.text(max_size=300)))
def test_tokenizer_on_arbitrary_text(tokenizer, text, text2):
    (ids, types), = tokenizer.encode([text], None if text2 is None else [text2])
    assert 2 <= len(ids) <= 32 and len(types) == len(ids)
    assert ids[0] == tokenizer.cls_id and ids[-1] == tokenizer.sep_id
    assert all(0 <= i < tokenizer.vocab_size for i in ids)
    assert set(types) <= ({0} if text2 is None else {0, 1})
    assert ids.count(tokenizer.sep_id) >= (1 if text2 is None else 2)

"""Readers: exact row counts of ../shared/data/README.md, the known bad rows, and crafted bad files."""
import pytest

from conftest import write_tsv
from minbert.data.readers import DataError, float_label, int_label, read_examples
from minbert.tasks import COURSE_TASKS

# rows per file from ../shared/data/README.md
README_ROWS = {
    ("sst", "train"): 8544, ("sst", "dev"): 1101, ("sst", "test"): 2210,
    ("para", "train"): 55814, ("para", "dev"): 10107, ("para", "test"): 10107,
    ("sts", "train"): 6040, ("sts", "dev"): 863, ("sts", "test"): 1725,
    ("cfimdb", "train"): 1707, ("cfimdb", "dev"): 245, ("cfimdb", "test"): 488,
}


@pytest.mark.parametrize("task,split", sorted(README_ROWS))
def test_course_files_row_counts(data_dir, task, split):
    examples, report = COURSE_TASKS[task].read(data_dir, split)
    assert report.rows == README_ROWS[task, split]
    assert len(examples) + len(report.bad) == report.rows
    labeled = [ex.label is not None for ex in examples]
    assert all(labeled) if split != "test" else not any(labeled)


def test_known_bad_quora_row_is_reported(data_dir):
    examples, report = COURSE_TASKS["para"].read(data_dir, "dev")
    assert [(b.line, b.reason.split(" (")[0]) for b in report.bad] == [(7114, "empty sentence2")]
    assert "quora-dev.csv:7114" in report.summary()
    assert len(examples) == 10106


def test_stray_column_in_test_files_is_noted_not_fatal(data_dir):
    examples, report = COURSE_TASKS["sst"].read(data_dir, "test")
    assert report.notes and "extra column" in report.notes[0]
    assert examples[0].id == "b7573736a6ddf7be102b7fee0" and examples[0].texts == ("Effective but too-tepid biopic",)


HEADER = ["", "id", "sentence", "sentiment"]


def read_sst(path, strict=False):
    return read_examples(path, ("sentence",), "sentiment", int_label(0, 4), strict)


@pytest.mark.parametrize("row,reason", [
    (["1", "b", "fine", "2", "extra"], "expected 4 columns, found 5"),
    (["1", "b", "  ", "2"], "empty sentence"),
    (["1", "b", "fine", ""], "empty sentiment"),
    (["1", "b", "fine", "good"], "sentiment 'good': not a number"),
    (["1", "b", "fine", "nan"], "sentiment 'nan': out of range"),
    (["1", "b", "fine", "7"], "sentiment '7': out of range"),
    (["1", "b", "fine", "2.5"], "sentiment '2.5': out of range"),
    (["1", "a", "again", "1"], "duplicate id 'a'"),
])
def test_bad_rows_are_reported_with_line_and_skipped(tmp_path, row, reason):
    path = write_tsv(tmp_path / "f.csv", HEADER, [["0", "a", "good film", "4"], row, ["2", "c", "bad film", "0"]])
    examples, report = read_sst(path)
    assert [ex.id for ex in examples] == ["a", "c"]
    assert len(report.bad) == 1 and report.bad[0].line == 3 and report.bad[0].reason.startswith(reason)
    with pytest.raises(DataError, match=f"f.csv:3: {reason[:12]}"):
        read_sst(path, strict=True)


def test_float_labels_and_ranges(tmp_path):
    header = ["", "id", "sentence1", "sentence2", "similarity"]
    path = write_tsv(tmp_path / "s.csv", header, [["0", "a", "x", "y", "4.6"], ["1", "b", "x", "y", "5.2"],
                                                  ["2", "c", "x", "y", "-0.1"], ["3", "d", "x", "y", "0"]])
    examples, report = read_examples(path, ("sentence1", "sentence2"), "similarity", float_label(0, 5))
    assert [(e.id, e.label) for e in examples] == [("a", 4.6), ("d", 0.0)]
    assert [b.line for b in report.bad] == [3, 4]


def test_unbalanced_quote_is_caught(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('\tid\tsentence1\tsentence2\tis_duplicate\n0\ta\t"Why so\tshort?\t1.0\n1\tb\tok\tfine\t0.0\n')
    examples, report = read_examples(path, ("sentence1", "sentence2"), "is_duplicate", int_label(0, 1))
    assert examples == [] and report.rows == 1
    assert (report.bad[0].line, report.bad[0].reason) == (2, "expected 5 columns, found 3 (an unbalanced quote joined lines 2-3)")


@pytest.mark.parametrize("content,message", [
    ("", "empty file"),
    ("\tid\ttext\tsentiment\n0\ta\tx\t1\n", "wrong header: missing column"),
])
def test_fatal_file_errors(tmp_path, content, message):
    path = tmp_path / "f.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_sst(path)


def test_missing_file_and_non_utf8(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_sst(tmp_path / "nope.csv")
    path = tmp_path / "latin.csv"
    path.write_bytes(b"\tid\tsentence\tsentiment\n0\ta\tfine\t1\n1\tb\tcaf\xe9\t2\n")
    with pytest.raises(DataError, match=r"latin.csv:3: not UTF-8"):
        read_sst(path)

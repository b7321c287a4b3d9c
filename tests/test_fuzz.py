"""Property-based fuzzing (hypothesis) of the readers, the tokenizer and the command line.

Readers: any file content raises nothing but `DataError`, and every row that is valid by an independent
definition is read back exactly. Tokenizer: any text or pair gives ids inside the vocabulary, framed by
[CLS] ... [SEP], never longer than max_length. Command line: any `--set` overrides (real key paths, wrong
nesting, unknown keys; values of every type) given to `minbert train --check` either pass validation
(exit 0, one JSON line) or end in one line `minbert: error: ...` naming a drawn key (exit 2), never
another exception, and nothing is created. `MINBERT_FUZZ=N` sets the examples per property (default 150).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import tempfile
import types
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from minbert import Tokenizer
from minbert.cli import main
from minbert.heads.settings import HeadSettings as HeadConfig
from minbert import settings as registry
from minbert.schema import Config
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


# ---- the command line: `minbert train --check --set KEY=VALUE ...` ----
NAMED: dict[str, str] = {}  # key -> the registry its names come from (settings.setting's one_of)


def config_keys(cls: type = Config, prefix: str = "") -> dict[str, typing.Any]:
    """Every dotted key of the config dataclasses with its annotation (sections included), plus per-task keys."""
    keys: dict[str, typing.Any] = {}
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        key = prefix + f.name
        keys[key] = tp
        if f.metadata.get("one_of"):
            NAMED[key] = f.metadata["one_of"]
        variants = list(registry.CHOICES[f.metadata["choice"]].values()) if "choice" in f.metadata else \
            [registry.SECTIONS[f.metadata["section"]]] if "section" in f.metadata else [tp]
        for variant in variants:
            if dataclasses.is_dataclass(variant):
                keys.update(config_keys(variant, key + "."))
        if not dataclasses.is_dataclass(variants[0]) and (typing.get_origin(tp) is dict or dict in [
                typing.get_origin(a) for a in typing.get_args(tp)]):
            for task in ("sst", "para", "sts", "cfimdb", "nli"):
                keys[f"{key}.{task}"] = None
    if cls is Config:  # per-task head settings
        keys.update({f"model.heads.sts.{name}": tp for name, tp in typing.get_type_hints(HeadConfig).items()})
        NAMED.update({f"model.heads.sts.{f.name}": f.metadata["one_of"] for f in dataclasses.fields(HeadConfig)
                      if f.metadata.get("one_of")})
    return keys

KEYS = config_keys()
LEAVES = [k for k, tp in KEYS.items() if not dataclasses.is_dataclass(tp)]
CHOICES = sorted({name for table in registry.NAMES.values() if not callable(table) for name in table})

key_path = st.one_of(
    st.sampled_from(sorted(KEYS)),  # real keys and sections
    st.sampled_from(LEAVES).map(lambda k: k + ".x"),  # wrong nesting: a value used as a section
    st.sampled_from(["bogus", "train.bogus", "model.heads.sts.bogus", "train.schedule.lr", "Train.lr", "train..lr"]),
)
number = st.one_of(st.integers(), st.integers(-3, 600), st.sampled_from([0, -1, 2**31, 2**32, 2**63, 10**400]),
                   st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.5, 1e-5, -0.0, 1e308]))
scalar = st.one_of(number, st.booleans(), st.none(), st.sampled_from(CHOICES), st.text(max_size=12))
value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(st.one_of(st.sampled_from(CHOICES), st.text(max_size=5)),
                                                                     inner, max_size=3)), max_leaves=6)
junk = st.sampled_from(["", " ", "[", "{a: 1, a: 2}", "!!python/object/apply:os.system [ls]", "&a [*a]", "*x",
                        "- - -", "&b {x: *b}", "%TAG", "@", "'", '"\\x00"', "{sst: 2, sst: 3}", "1" * 5000, ".nan", "-.inf",
                        "0x1F", "1_000", "~", "yes", "[1, [2, [3]]]", "\t", "a: b: c"])


def as_text(v) -> str:
    """A drawn value as the user would type it: JSON (a subset of YAML; NaN and Infinity included)."""
    if isinstance(v, str):
        return v
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 10**300:
        return str(v)
    return json.dumps(v)


def plausible(tp, names: str | None = None) -> st.SearchStrategy:
    """Values of the annotated type in everyday ranges, so that many draws pass validation and reach preflight;
    a name from the registry `names` where the setting takes one."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(st.none() if a is type(None) else plausible(a, names) for a in args))
    if origin is list:
        return st.lists(plausible(args[0], names), max_size=3)
    if tp is str and names:
        table = registry.NAMES[names]
        return st.sampled_from(["sst", "para", "sts"] if callable(table) else list(table))
    if origin is dict:
        return st.dictionaries(st.sampled_from(["sst", "para", "sts"]), plausible(args[1]), max_size=3)
    if dataclasses.is_dataclass(tp) or tp is dict:
        return st.just({})
    return {int: st.integers(0, 9), float: st.floats(0, 0.99), bool: st.booleans(),
            str: st.sampled_from(["auto", "cpu", "cuda", "cuda:1", ""])}[tp]


# half the draws: a real key with a value of its type; half: anything at any key path
typed = st.sampled_from([k for k in LEAVES if KEYS[k] is not None and k != "model.backbone"]).flatmap(
    lambda k: st.tuples(st.just(k), plausible(KEYS[k], NAMED.get(k)).map(as_text)))
override = st.one_of(typed, st.tuples(key_path, st.one_of(value.map(as_text), junk)))


@pytest.fixture(scope="module")
def check_args(tiny_backbone, small_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz") / "run"
    return out, ["train", "--check", "--data-dir", str(small_data_dir), "--out", str(out),
                 "--set", f"model.backbone={tiny_backbone}"]


def names_a_drawn_key(message: str, keys: list[str]) -> bool:
    """The message names a drawn key, or the real key it goes wrong at (a leaf key that is a prefix of the
    drawn one: `train.lr` of `train.lr.x`), or its first unknown part (`unknown key Train` of `Train.lr`)."""
    for key in keys:
        parts = key.strip().split(".")
        prefixes = [".".join(parts[:n]) for n in range(1, len(parts))]
        if key.strip() in message or any(p in message for p in set(prefixes) & set(LEAVES)) \
                or any(f"unknown key {p} " in message for p in prefixes):
            return True
    return False


@FUZZ
@given(st.lists(override, min_size=1, max_size=3))
def test_command_line_overrides_pass_or_name_a_key(check_args, overrides):
    out, args = check_args
    sets = [a for k, v in overrides for a in ("--set", f"{k}={v}")]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(args + sets)  # any other exception fails the test with its traceback
    assert not out.exists()
    event(f"exit {code}")  # counted by --hypothesis-show-statistics
    if code == 0:
        lines = stdout.getvalue().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["ok"] is True and stderr.getvalue() == ""
        return
    assert code == 2
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minbert: error: "), stderr.getvalue()
    assert names_a_drawn_key(lines[0], [k for k, _ in overrides]), (lines[0], overrides)


def test_fuzz_keys_cover_the_config():
    """The drawn key paths are the config's own: every leaf of the defaults is among them."""
    def leaves(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and k not in ("batch_size",):
                yield from leaves(v, prefix + k + ".")
            else:
                yield prefix + k
    assert set(leaves(Config().to_dict())) <= set(KEYS)

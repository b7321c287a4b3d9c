"""The generic config loader: YAML files and `--set key=value` overrides (or dotted keys with Python values, from
the Python API) built into the settings classes the techniques declare (settings.py), then checked. It names no
technique: a field's annotation gives its type, its `setting()` its range and names, a `section()` field the
class registered under its key, a `chosen()` field the class its `name` picks. Any problem is a one-line
`ConfigError` naming the key (YAML: the file and line). What a run's config holds is schema.py.

pydantic v2's discriminated unions would replace `_convert` and `_build` (60 lines) but not the ranges,
registries and cross-key rules, and print several lines per error: declined.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any
import yaml

from . import writes
from .data.readers import read_text
from .errors import ConfigError, DataError
from .settings import CHOICES, RANGES, SECTIONS, check_name, show

INT_MAX = 2**31 - 1  # integers end up as C ints in torch (a seed declares its own range)


def _convert(value: Any, tp: Any, key: str, meta: typing.Mapping = {}) -> Any:
    """Check `value` against the annotation `tp`, converting ints to floats where a float is wanted."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key, meta)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {show(value)}")
        return [_convert(v, typing.get_args(tp)[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {show(value)}")
        kt, vt = typing.get_args(tp)
        return {_convert(k, kt, key): _convert(v, vt, f"{key}.{k}") for k, v in value.items()}
    if "section" in meta:
        return _build(SECTIONS[meta["section"]], value, key)
    if "choice" in meta:
        return _build_choice(meta["choice"], value, key, meta["default"])
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is float and not isinstance(value, bool) and isinstance(value, (int, float, str)):
        try:
            number = float(value)  # YAML 1.1 reads "5e-5" as a string
        except OverflowError:
            raise ConfigError(f"{key}: {show(value)} is too large for a float") from None
        except ValueError:
            number = None
        if number is not None:
            if not math.isfinite(number):
                raise ConfigError(f"{key}: must be a finite number, got {show(value)}")
            return number
    if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{key}: expected {tp.__name__}, got {type(value).__name__} {show(value)}")


def _build(cls: type, raw: Any, prefix: str = "", ignore: typing.Mapping[str, Any] = {}) -> Any:
    """An instance of the dataclass `cls` from a mapping; `ignore`: keys to drop when they hold these values."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {show(raw)}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    raw = {k: v for k, v in raw.items() if k in known or k not in ignore or v != ignore[k]}
    unknown = [k for k in raw if k not in known]
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key {where}{unknown[0]} (known: {', '.join(sorted(known))})")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _convert(v, hints[k], f"{prefix}.{k}" if prefix else k, known[k].metadata)
                  for k, v in raw.items()})


def _build_choice(key: str, raw: Any, prefix: str, default: str) -> Any:
    """The settings class registered under `key` that the mapping's `name` picks (default: the field's default).
    A key of another choice holding that choice's default is dropped: a config saved when every choice's keys
    were one section's still loads."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix}: expected a mapping, got {show(raw)}")
    name = raw.get("name", default)
    check_name(f"{prefix}.name", key, name)
    defaults = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                for cls in CHOICES[key].values() for f in dataclasses.fields(cls)}
    return _build(CHOICES[key][name], raw, prefix, ignore=defaults)


def check(obj: Any, root: Any, prefix: str = "") -> None:
    """Every field's declared range and names, then each settings object's own `check`, depth first."""
    for f in dataclasses.fields(obj):
        key, value = f"{prefix}.{f.name}" if prefix else f.name, getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check(value, root, key)
            continue
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else None
        for k, v in ([(None, value)] if items is None else items):
            where = key if k is None else f"{key}[{k}]" if isinstance(value, list) else f"{key}.{k}"
            if dataclasses.is_dataclass(v):
                check(v, root, where)
            elif v is not None:
                _check_value(f.metadata, where, v, key if isinstance(value, dict) else where, root)
            if isinstance(value, dict) and f.metadata.get("keys"):
                check_name(key, f.metadata["keys"], k, root)
    if hasattr(obj, "check"):
        obj.check(prefix, root)


def _check_value(meta: typing.Mapping, key: str, value: Any, name_key: str, root: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_MAX and meta.get("check") != "seed":
        raise ConfigError(f"{key}: must be at most {INT_MAX} in size, got {show(value)}")
    if meta.get("check") in RANGES:
        holds, must = RANGES[meta["check"]]
        if not holds(value):
            raise ConfigError(f"{key}: {must}, got {show(value)}")
    if meta.get("one_of"):
        check_name(name_key, meta["one_of"], value, root)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:  # {a: {b: 1}} -> {"a.b": 1}
    return {k2: v2 for k, v in d.items() for k2, v2 in
            (flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}).items()}


# ---- YAML: a key given twice and bytes that are not UTF-8 are errors naming the file and line ----
class DuplicateKeyError(yaml.MarkedYAMLError): ...  # a YAML mapping giving a key twice (PyYAML's error type)


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, refusing a mapping that gives a key twice (SafeLoader keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                    seen.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:
                    continue  # an unhashable key: construct_mapping below reports it
                if first is not None:
                    raise DuplicateKeyError(None, None, f"duplicate key {key!r} (first given on line {first})",
                                            key_node.start_mark)
        return super().construct_mapping(node, deep)


def yaml_problem(e: yaml.YAMLError) -> tuple[int | None, str]:
    """The 1-based line and a one-line reason of a YAML error."""
    mark = getattr(e, "problem_mark", None)
    why = " ".join(str(getattr(e, "problem", None) or type(e).__name__).split())
    return (mark.line + 1 if mark is not None else None), why


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=UniqueKeyLoader)


def _apply_override(raw: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key=value")
    key, text = assignment.split("=", 1)
    try:
        value = parse_yaml(text) if text.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}: cannot parse value {show(text)} ({yaml_problem(e)[1]})") from None
    except (ValueError, OverflowError, RecursionError) as e:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"--set {key}: cannot parse value {show(text)} ({show(str(e))})") from None
    set_key(raw, key, value)


def set_key(raw: dict, key: str, value: Any) -> None:
    """Put `value` at the dotted `key` of a raw config mapping (what `--set key=value` does once parsed); naming
    another choice (`train.schedule.name=...`) drops the keys set before that the new one does not take."""
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part} is not a section")
    node[parts[-1]] = value
    chosen = CHOICES.get(".".join(parts[:-1]), {}).get(value) if parts[-1] == "name" and isinstance(value, str) else None
    for k in [k for k in node if chosen and k not in {f.name for f in dataclasses.fields(chosen)}]:
        del node[k]


def read_yaml(path: Path, what: str = "config") -> dict:
    """A YAML mapping from a file; a missing or unreadable file, bytes that are not UTF-8, bad YAML, a key
    given twice or a non-mapping is a `ConfigError` naming the file (and the line)."""
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found")
    try:
        text = read_text(path)  # the data readers' reading: unreadable or non-UTF-8 bytes named by line
    except DataError as e:
        raise ConfigError(f"{e}; is this a YAML {what} file?") from None
    try:
        raw = parse_yaml(text) or {}
    except yaml.YAMLError as e:
        line, why = yaml_problem(e)
        raise ConfigError(f"{path}{'' if line is None else f':{line}'}: not valid YAML ({why})") from None
    except (ValueError, OverflowError, RecursionError) as e:
        raise ConfigError(f"{path}: not valid YAML ({show(str(e))})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(raw).__name__}")
    return raw


def load(root: type, path: str | Path | None = None, overrides: list[str] | None = None,
         values: dict[str, Any] | None = None, defaults: typing.Callable[[dict], None] = lambda raw: None):
    """Read a YAML config (or none), apply `key=value` overrides, then `values` (dotted keys to Python values, as
    the Python API passes them), let `defaults` fill the raw mapping, then build `root` and check it."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        raw = read_yaml(path)
    for assignment in overrides or []:
        _apply_override(raw, assignment)
    for key, value in (values or {}).items():
        set_key(raw, key, value)
    defaults(raw)
    try:
        cfg = _build(root, raw)
        check(cfg, cfg)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None
    return cfg


def config_differences(a: Any, b: Any) -> list[str]:
    """The dotted keys whose values differ between two configs."""
    fa, fb = flatten(dataclasses.asdict(a)), flatten(dataclasses.asdict(b))
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))


def save_config(cfg: Any, path: str | Path) -> None:
    writes.write_text(path, yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))

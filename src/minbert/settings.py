"""The leaf every technique's settings are declared with: `Settings` (a dataclass base), `setting()` (a field
with its default, a one-line doc and its range), and the registries that name things by key.

A technique keeps its settings beside its code and registers them here:

    @choice("train.schedule", "temperature")        # picked when train.schedule.name is temperature
    @dataclass
    class TemperatureSettings(Settings):
        temperature: float = setting(2.0, "p ~ size^(1/T)", check="positive")

    SCHEDULE_NAMES = names("train.schedule.until", ("longest", "shortest"))   # a key whose value is a name

The generic loader (config.py) builds a config section from whatever registered under its key; it names no
technique. This module imports nothing of minbert's but the error classes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, TypeVar

from .errors import ConfigError

T = TypeVar("T")

# a range check by name: (holds, what the message says the value must be)
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "positive": (lambda v: v > 0, "must be positive"),
    "non_negative": (lambda v: v >= 0, "must be >= 0"),
    "unit": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "fraction": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "closed_unit": (lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    "seed": (lambda v: 0 <= v <= 2**32 - 1, "must be an integer in [0, 4294967295] (the seed range of numpy and torch)"),
}


@dataclass
class Settings:
    """A section of the config (or a part of one). `check` holds the rules that need more than one key:
    `key` is the section's dotted path, `root` the whole config."""

    def check(self, key: str, root: Any) -> None:
        return None


def setting(default: Any = dataclasses.MISSING, doc: str = "", *, check: str | None = None,
            one_of: str | None = None, keys: str | None = None, factory: Callable[[], Any] | None = None) -> Any:
    """A settings field: `check` names a range (RANGES) applied to the value (each value of a list or mapping);
    `one_of` names the registry (`names`) whose names the value (each item of a list) must be; `keys` the one
    a mapping's keys must be."""
    assert check is None or check in RANGES, check
    meta = {"doc": doc, "check": check, "one_of": one_of, "keys": keys}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def section(key: str, doc: str = "") -> Any:
    """A field holding the one settings class registered under `key` (see `register`)."""
    return field(default_factory=lambda: SECTIONS[key](), metadata={"doc": doc, "section": key})


def chosen(key: str, default: str, doc: str = "") -> Any:
    """A field holding the settings class registered under `key` whose name the section's `name` gives."""
    return field(default_factory=lambda: CHOICES[key][default](), metadata={"doc": doc, "choice": key,
                                                                           "default": default})


# ---- registries, filled when the technique modules are imported (minbert/catalogue.py imports them all) ----
NAMES: dict[str, Any] = {}  # key -> the names a value there may take (-> what each name stands for), see names_in
SECTIONS: dict[str, type] = {}  # key -> the settings class of that section
CHOICES: dict[str, dict[str, type]] = {}  # key -> name -> settings class, picked by the section's `name`
WHAT: dict[str, str] = {}  # key -> how a name not among names_in's is refused


def names(key: str, table: Iterable[str] | dict[str, T]) -> dict[str, T]:
    """Register the names a setting (`one_of=key`) may take; returns the table as a dict (in order)."""
    table = dict(table) if isinstance(table, dict) else {n: n for n in table}
    NAMES.setdefault(key, {}).update(table)
    return table


def register(key: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: the settings of the section at `key` (one class)."""
    def add(cls: type[T]) -> type[T]:
        assert SECTIONS.get(key, cls) is cls, f"two settings classes for {key}"
        SECTIONS[key] = cls
        return cls
    return add


@dataclass
class Choice(Settings):
    """A section one of several settings classes can fill, picked by its `name` (see `choice`)."""

    name: str = ""


def choice(key: str, name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator for a `Choice`: the settings of the section at `key` when its `name` is `name` (the
    class returned is the decorated one with `name` defaulting to it)."""
    def add(cls: type[T]) -> type[T]:
        named = dataclass(type(cls.__name__, (cls,), {
            "__annotations__": {"name": "str"}, "__module__": cls.__module__, "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__, "name": field(default=name, metadata={"doc": "", "one_of": key})}))
        CHOICES.setdefault(key, {})[name] = named
        NAMES.setdefault(key, {})[name] = named
        return named
    return add


def names_in(key: str, names_of: Callable[[Any], list[str]], what: str) -> None:
    """Register names that depend on the whole config (`names_of(root)`), refused as "is not `what`"."""
    NAMES[key], WHAT[key] = names_of, what


def check_name(key: str, registry: str, value: Any, root: Any = None) -> None:
    known = NAMES.get(registry)
    assert known, f"nothing registered names for {registry}: is minbert.catalogue imported?"
    if callable(known):
        known = known(root)
        if value not in known:
            raise ConfigError(f"{key}: {show(value)} is not {WHAT[registry]} ({', '.join(known)})")
    if not isinstance(value, str) or value not in known:
        raise ConfigError(f"{key}: {show(value)} is not one of {list(known)}")


def show(value: Any) -> str:
    """A value for a one-line message: repr, shortened (a huge integer has no practical repr)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**30:
        return f"an integer of about {value.bit_length() * 0.30103:.0f} digits"
    text = " ".join(repr(value).split())
    return text if len(text) <= 80 else text[:77] + "..."

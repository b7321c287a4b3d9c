"""The task table: every task is data. A `TaskSpec` says where a task's rows are, which columns hold its text(s)
and label, what kind of output it has, how it is measured and how its prediction files look; a `Task` is the
spec made usable (its kind of output, label parser and metrics).

Specs come from YAML: the shipped catalogues (task_catalogues/course.yaml: the course's sst, para, sts, cfimdb;
task_catalogues/glue.yaml: glue/cola ... glue/wnli) and a run's own `task_defs` (inline in its config or in a
file it names), all read by the same code. docs/guide/tasks.md describes every field.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from .data.readers import (Example, LabelParser, ReadReport, class_label, float_label, int_label, read_source_examples,
                           check_source)
from .errors import ConfigError
from .kinds import Binary, Classify, Regress, TaskKind
from .metrics import DEFAULT_METRIC, METRICS, metric_problem
from .settings import Settings, names, setting

CATALOGUE_DIR = Path(__file__).parent / "task_catalogues"
KINDS_OF_SPEC = {"classes": "classify", "binary": "binary", "score": "regress"}  # a spec's `kind` -> kinds.py's
FORMATS = names("task.format", ("csv", "tsv", "jsonl"))
names("task.kind", tuple(KINDS_OF_SPEC))
names("task.quoting", ("csv", "none"))
names("task.prediction_format", ("csv", "tsv", "course"))
names("task.metric", tuple(METRICS))
SPLITS = ("train", "dev", "test")
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]*")  # a declared task's name (catalogue names add a prefix: glue/rte)
RESERVED = ("overall", "epoch", "score", "seconds", "run", "metrics")  # keys of result records beside task names
COURSE_TRIO = ("sst", "para", "sts")


@dataclass
class DatasetsSource(Settings):
    """Rows from the Hugging Face `datasets` library instead of files (the optional extra `minbert[datasets]`)."""

    path: str = setting(doc="a Hub dataset name (glue), a local loading script or data folder, or a folder that "
                            "`save_to_disk` wrote")
    name: str | None = setting(None, "the dataset's configuration (e.g. rte for glue)")
    splits: dict[str, str] | None = setting(None, "minbert's split -> the dataset's (default: train, validation, "
                                                  "test)")
    revision: str | None = setting(None, "a Hub dataset's revision (branch, tag or commit)")


@dataclass
class TaskSpec(Settings):
    """One task as a user (or a catalogue) declares it. Paths are relative to `dir`, or to the data directory."""

    text: list[str] | None = setting(None, "the text column, or the two columns of a pair (required)")
    pair: bool | None = setting(None, "true: a pair task (two text columns), false: one text (None: as `text` has)")
    label: str | None = setting(None, "the label column, absent from test files (required)")
    kind: str | None = setting(None, "classes | binary | score (required)", one_of="task.kind")
    files: dict[str, str] | None = setting(None, "split -> file: train, dev, test (CSV, TSV or JSONL)")
    datasets: DatasetsSource | None = setting(None, "or rows from a Hugging Face `datasets` source")
    dir: str | None = setting(None, "the folder the files are in (None: the data directory; relative: to the "
                                    "file declaring the task)")
    format: str | None = setting(None, "csv | tsv | jsonl (None: from each file's extension)", one_of="task.format")
    headerless: list[str] | None = setting(None, "the splits whose files have no header line (e.g. [train, dev])")
    columns: list[str] | None = setting(None, "the columns' names, in order, of those files")
    quoting: str = setting("csv", "csv: double quotes quote a field | none: a quote is text (GLUE's files)",
                           one_of="task.quoting")
    id: str = setting("id", "the id column; a file without it numbers its rows by line (noted in the log)")
    id_required: bool = setting(False, "a file without the id column is an error instead")
    classes: list[str | int | float | bool] | None = setting(None, "classes / binary: the labels as found in the files, in order "
                                              "(binary: negative, positive); None: read from the training split")
    classes_from: str | None = setting(None, "recorded by the run: the file its classes were read from")
    class_names: list[str] | None = setting(None, "what each class means, for reports (None: the labels)")
    range: list[float] | None = setting(None, "score: [lowest, highest]")
    metrics: list[str] | None = setting(None, "accuracy | f1 | macro_f1 | mcc | pearson | spearman; the first "
                                              "selects the best checkpoint (None: accuracy, or pearson for a score)",
                                        one_of="task.metric")
    title: str | None = setting(None, "the task's name in tables and reports")
    column: str | None = setting(None, "its column in result tables (None: title and metric)")
    prediction_header: str = setting("prediction", "the prediction files' value column")
    prediction_id: str = setting("id", "the prediction files' id column")
    prediction_format: str = setting("csv", "csv | tsv | course (the course's `id , value` lines)",
                                     one_of="task.prediction_format")
    prediction_files: dict[str, str] | None = setting(None, "split -> prediction file name (default: "
                                                           "NAME-SPLIT-output.csv)")
    prediction_decimals: int = setting(4, "score: decimals written", check="non_negative")

    def check(self, key, root):
        problem = spec_problem(self)
        if problem:
            raise ConfigError(f"{key}.{problem[0]}: {problem[1]}")


def spec_problem(spec: TaskSpec) -> tuple[str, str] | None:
    """(the field to blame, why) when a spec cannot make a task, or None."""
    for required in ("text", "label", "kind"):
        if getattr(spec, required) is None:
            return required, "missing: a task needs its text column(s), its label column and its kind"
    kind = KINDS_OF_SPEC[spec.kind]
    if not 1 <= len(spec.text) <= 2:
        return "text", f"name one text column or the two of a pair, got {len(spec.text)}"
    if spec.pair is not None and spec.pair != (len(spec.text) == 2):
        return "text", (f"a pair task takes two text columns, got {spec.text}" if spec.pair
                        else f"pair: false takes one text column, got {spec.text}")
    if len(set(spec.text)) != len(spec.text):
        return "text", "a pair's two columns must differ"
    if spec.label in spec.text:
        return "label", f"{spec.label!r} is also a text column"
    if (spec.files is None) == (spec.datasets is None):
        return "files", "give either files (split -> file) or datasets (a Hugging Face source), not both or none"
    for field_name, splits in (("files", spec.files), ("prediction_files", spec.prediction_files),
                               ("datasets.splits", spec.datasets and spec.datasets.splits)):
        unknown = sorted(set(splits or {}) - set(SPLITS))
        if unknown:
            return field_name, f"{unknown} not among the splits {list(SPLITS)}"
    for split in ("train", "dev"):
        if split not in (spec.files if spec.files is not None else datasets_splits(spec)):
            return ("files" if spec.files is not None else "datasets.splits"), f"needs a {split} split (test is optional)"
    if spec.headerless and not spec.columns:
        return "columns", "files without a header line need their columns named (columns: [...])"
    if spec.headerless and spec.columns:
        absent = [c for c in (*spec.text, spec.label) if c not in spec.columns]
        if absent:
            return "columns", f"{absent} named above but not among columns {spec.columns}"
    if spec.headerless and (set(spec.headerless) - set(spec.files or {})):
        return "headerless", f"{sorted(set(spec.headerless) - set(spec.files or {}))} not among the files' splits"
    if kind == "regress":
        if spec.classes is not None:
            return "classes", "a score has a range, not classes"
        if spec.range is None or len(spec.range) != 2 or not spec.range[0] < spec.range[1]:
            return "range", f"a score needs range: [lowest, highest] with lowest < highest, got {spec.range}"
    else:
        if spec.range is not None:
            return "range", f"a {spec.kind} task has classes, not a range"
        if spec.classes is not None:
            if len(spec.classes) < 2:
                return "classes", f"name at least two classes, got {spec.classes}"
            if kind == "binary" and len(spec.classes) != 2:
                return "classes", f"a binary task has two classes (negative, positive), got {len(spec.classes)}"
            if any(isinstance(c, bool) for c in spec.classes):
                return "classes", (f"{spec.classes} holds YAML booleans (yes / no / true / false unquoted): quote the "
                                   "labels as the files write them, e.g. ['no', 'yes']")
            if not all(isinstance(c, (str, int, float)) for c in spec.classes):
                return "classes", f"classes are labels as found in the files (text or numbers), got {spec.classes}"
            if len({label_key(c) for c in spec.classes}) != len(spec.classes):
                return "classes", f"a class is listed twice in {spec.classes}"
        if spec.class_names is not None and spec.classes is not None and len(spec.class_names) != len(spec.classes):
            return "class_names", f"{len(spec.class_names)} names for {len(spec.classes)} classes"
    for m in spec.metrics or ():
        why = metric_problem(m, kind, len(spec.classes) if spec.classes is not None else None)
        if why:
            return "metrics", why
    if spec.metrics is not None and not spec.metrics:
        return "metrics", "name at least one metric"
    return None


def label_key(value: Any) -> str:
    """A class label's text as compared with a file's: numbers by value (3 and 3.0 alike), text as it is."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(float(value))
    return str(value).strip()


@dataclass(frozen=True)
class Task:
    """A task ready to use: its spec, kind of output, label parser, metrics and prediction format."""

    name: str
    spec: TaskSpec = field(repr=False, compare=False)
    kind: TaskKind
    num_outputs: int  # width of the head's output
    parse_label: LabelParser | None = field(repr=False, compare=False)  # None until the classes are known
    base_dir: Path | None = None  # the spec's `dir`, resolved (None: the data directory)

    @property
    def text_columns(self) -> tuple[str, ...]:
        return tuple(self.spec.text)

    @property
    def label_column(self) -> str:
        return self.spec.label

    @property
    def is_pair(self) -> bool:
        return len(self.spec.text) == 2

    @property
    def metric_names(self) -> list[str]:
        return list(self.spec.metrics or [DEFAULT_METRIC[self.kind.name]])

    @property
    def metric_name(self) -> str:
        """The metric that selects the best checkpoint."""
        return self.metric_names[0]

    @property
    def metric(self) -> Callable[[np.ndarray, np.ndarray], float]:
        """The selecting metric's function."""
        return METRICS[self.metric_name].fn

    def output_problem(self, other: "Task") -> str | None:
        """Why another run's task of this name gives outputs that do not mean this task's (another kind, other
        classes or their order, another range), or None."""
        mine, theirs = self.spec, other.spec
        for what, a, b in (("kind", mine.kind, theirs.kind), ("classes", mine.classes, theirs.classes),
                           ("range", mine.range, theirs.range)):
            if a != b:
                return f"its {what}: {b}, this run's: {a}"
        return None

    def scores(self, pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
        """Every declared metric: the selecting one under the task's name, the others as `TASK.METRIC`."""
        return {(self.name if i == 0 else f"{self.name}.{m}"): METRICS[m].fn(pred, gold)
                for i, m in enumerate(self.metric_names)}

    @property
    def title(self) -> str:
        return self.spec.title or self.name

    @property
    def column(self) -> str:
        return self.spec.column or f"{self.title} {METRICS[self.metric_name].title}"

    @property
    def classes(self) -> list[Any] | None:
        return self.spec.classes

    @property
    def class_names(self) -> tuple[str, ...]:
        if self.kind.name == "regress" or self.spec.classes is None:
            return ()
        return tuple(self.spec.class_names or [str(c) for c in self.spec.classes])

    @property
    def prediction_header(self) -> str:
        return self.spec.prediction_header

    def format_value(self, value: float | int) -> str:
        """A prediction as the prediction files write it: the class label as found in the files, or the score."""
        if self.kind.name == "regress":
            return f"{float(value):.{self.spec.prediction_decimals}f}"
        label = self.spec.classes[int(value)]
        return str(int(label)) if isinstance(label, float) and label.is_integer() else str(label)

    def probability_columns(self) -> list[str]:
        """The columns `minbert predict` gives probabilities under: one per class (prob_LABEL), the positive
        class's for a binary task, none for a score."""
        if self.kind.name == "classify":
            return [f"prob_{self.format_value(i)}" for i in range(self.num_outputs)]
        return self.kind.probability_columns(self.num_outputs)

    def prediction_file(self, split: str) -> str:
        files = self.spec.prediction_files or {}
        return files.get(split, f"{self.name.replace('/', '-')}-{split}-output.csv")

    def folder(self, data_dir: Path) -> Path:
        return self.base_dir if self.base_dir is not None else data_dir

    def has_split(self, split: str) -> bool:
        if self.spec.files is not None:
            return split in self.spec.files
        return split in datasets_splits(self.spec)

    def path(self, data_dir: Path, split: str) -> Path:
        """The file of `split` (for a `datasets` source: the source's own name for it)."""
        if self.spec.files is None:
            return Path(f"{self.spec.datasets.path}[{datasets_splits(self.spec)[split]}]")
        return self.folder(data_dir) / self.spec.files[split]

    def read(self, data_dir: Path, split: str, strict: bool = False) -> tuple[list[Example], ReadReport]:
        if self.parse_label is None:
            raise ConfigError(f"task {self.name}: its classes are not known yet (read them from its training split "
                              "first: `resolve_classes`)")
        return read_source_examples(self.spec, self.path(data_dir, split), split, datasets_splits(self.spec).get(split),
                                    self.label_column if split != "test" else None, self.parse_label, strict)

    def check_file(self, data_dir: Path, split: str) -> None:
        """The split's file is present, readable, UTF-8 and has the columns `read` needs (its rows are not read)."""
        check_source(self.spec, self.path(data_dir, split), split, datasets_splits(self.spec).get(split),
                     self.label_column if split != "test" else None)


def datasets_splits(spec: TaskSpec) -> dict[str, str]:
    """A `datasets` source's splits: minbert's name -> the dataset's (default train, validation; no test)."""
    if spec.datasets is None:
        return {}
    return spec.datasets.splits or {"train": "train", "dev": "validation"}


def make_task(name: str, spec: TaskSpec, base_dir: Path | None = None) -> Task:
    """A task from its (checked) spec; a classifier whose classes are not declared yet has no label parser."""
    kind_name = KINDS_OF_SPEC[spec.kind]
    if kind_name == "regress":
        low, high = spec.range
        return Task(name, spec, Regress(max_score=float(high), min_score=float(low)), 1, float_label(low, high),
                    base_dir)
    kind: TaskKind = Binary() if kind_name == "binary" else Classify()
    width = 1 if kind_name == "binary" else len(spec.classes or ())
    return Task(name, spec, kind, width, label_parser(spec.label, spec.classes), base_dir)


def label_parser(column: str, classes: list[Any] | None) -> LabelParser | None:
    """Labels as class indices: classes 0..n-1 by value ("3" or "3.0" is class 3); other labels by their text
    (numbers by value)."""
    if classes is None:
        return None
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes) and classes == list(range(len(classes))):
        return int_label(0, len(classes) - 1)
    return class_label({label_key(c): i for i, c in enumerate(classes)}, [str(c) for c in classes])


def _load_catalogue(file: str, prefix: str = "") -> dict[str, TaskSpec]:
    from .config import _build, check  # the generic loader (config.py imports no component)

    raw = yaml.safe_load((CATALOGUE_DIR / file).read_text())
    specs = {}
    for name, entry in raw.items():
        spec = _build(TaskSpec, normalise_spec(entry), f"{file}: {name}")
        check(spec, None, f"{file}: {name}")
        specs[prefix + name] = spec
    return specs


@functools.cache
def catalogue() -> dict[str, Task]:
    """Every shipped task by name: the course's, then GLUE's (`glue/NAME`)."""
    specs = {**_load_catalogue("course.yaml"), **_load_catalogue("glue.yaml", "glue/")}
    return {name: make_task(name, spec) for name, spec in specs.items()}


def normalise_spec(entry: Any) -> Any:
    """A spec mapping with a one-column `text: sentence` given as a list (what `TaskSpec.text` holds)."""
    if isinstance(entry, dict) and isinstance(entry.get("text"), str):
        return {**entry, "text": [entry["text"]]}
    return entry


def task_table(task_defs: dict[str, TaskSpec] | None) -> dict[str, Task]:
    """The catalogue's tasks and a run's declared ones (`task_defs`, already checked) by name."""
    declared = {name: make_task(name, spec, Path(spec.dir) if spec.dir else None)
                for name, spec in (task_defs or {}).items()}
    return {**catalogue(), **declared}


# seed report 000's sequential baseline: SST, then STS, then Quora (train.schedule.order's default)
SEQUENTIAL_ORDER = ("sst", "sts", "para")


def get_task(name: str, task_defs: dict[str, TaskSpec] | None = None) -> Task:
    table = task_table(task_defs)
    if name not in table:
        raise KeyError(f"unknown task {name!r}; choose from {sorted(table)}")
    return table[name]


def overall_score(metrics: dict[str, float], tasks: list[str] | None = None,
                  weights: dict[str, float] | None = None) -> float | None:
    """The run's overall score once every task of `tasks` has its metric: for the course's SST + Quora + STS,
    (sst_acc + para_acc + (sts_r + 1) / 2) / 3; for any other set of two or more tasks, the mean of their
    selecting metrics (GLUE's convention), or their mean weighted by `weights` (one for each task) when given.
    None for one task. `tasks` None: the course's trio when all three are in `metrics`."""
    if tasks is None:
        tasks = list(COURSE_TRIO) if all(k in metrics for k in COURSE_TRIO) else []
    if len(tasks) < 2 or not all(t in metrics for t in tasks):
        return None
    if weights is None and sorted(tasks) == sorted(COURSE_TRIO):
        return (metrics["sst"] + metrics["para"] + (metrics["sts"] + 1) / 2) / 3
    w = weights or {t: 1.0 for t in tasks}
    return float(sum(w[t] * metrics[t] for t in tasks) / sum(w[t] for t in tasks))


def resolve_classes(task_defs: dict[str, TaskSpec] | None, data_dir: Path) -> list[str]:
    """Fill in the classes of each declared classes / binary task that does not list them, read from its training
    split (sorted: by value when they are all numbers); returns a line for the log per task. A binary task must
    find exactly two labels, any classifier at least two: else a `DataError` asking to declare them."""
    from .errors import DataError

    notes = []
    for name, spec in (task_defs or {}).items():
        if KINDS_OF_SPEC[spec.kind] == "regress" or spec.classes is not None:
            continue
        task = make_task(name, spec, Path(spec.dir) if spec.dir else None)
        path = task.path(data_dir, "train")
        examples, _ = read_source_examples(spec, path, "train", datasets_splits(spec).get("train"), spec.label, str)
        values = sorted({e.label for e in examples})
        if all(_number(v) is not None for v in values):
            values = sorted({_number(v) for v in values})
        wanted = "two labels" if spec.kind == "binary" else "at least two labels"
        if (spec.kind == "binary" and len(values) != 2) or len(values) < 2:
            raise DataError(f"task_defs.{name}.classes: a {spec.kind} task needs {wanted}; {path} has "
                            f"{len(values)} in its {spec.label} column ({values[:10]}): declare them (classes: [...])")
        spec.classes, spec.classes_from = values, str(path)
        problem = spec_problem(spec)
        if problem:
            raise ConfigError(f"task_defs.{name}.{problem[0]}: {problem[1]}")
        notes.append(f"task {name}: classes read from {path}: {values} (declare task_defs.{name}.classes to set "
                     "them and their order)")
    return notes


def adopt_classes(task_defs: dict[str, TaskSpec] | None, recorded: dict[str, TaskSpec] | None) -> None:
    """Declared tasks that leave their classes to the data take the classes a run recorded for them (the run read
    them from its training split), so that the config they come from compares equal to the run's."""
    for name, spec in (task_defs or {}).items():
        saved = (recorded or {}).get(name)
        if spec.classes is None and saved is not None and saved.classes_from is not None:
            spec.classes, spec.classes_from = saved.classes, saved.classes_from


def _number(text: str) -> int | float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else value


COURSE_TASKS: dict[str, Task] = {n: t for n, t in catalogue().items() if "/" not in n}  # sst, para, sts, cfimdb


def metric_columns(records: list[dict]) -> list[str]:
    """The keys of result tables' columns: each task's selecting metric as met in `records` (mappings of metric
    name to value, and other fields; the course's tasks first, in their order), then `overall`."""
    def is_task_metric(k: str, v) -> bool:
        return isinstance(v, (int, float, dict)) and not isinstance(v, bool) and k not in ("overall", "epoch", "score") \
            and (k in catalogue() or ("." not in k and NAME_PATTERN.fullmatch(k) is not None))

    seen = [k for r in records for k, v in r.items() if is_task_metric(k, v) and k != "seconds"]
    order = [*COURSE_TASKS, *dict.fromkeys(seen)]
    return [*dict.fromkeys(k for k in order if k in seen), *(["overall"] if any("overall" in r for r in records) else [])]


def column_title(key: str) -> str:
    """A result table's heading for a metric key: a catalogue task's column, else the key itself."""
    return catalogue()[key].column if key in catalogue() else key

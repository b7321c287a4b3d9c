"""Distillation from finished runs: born-again multi-task networks (Clark et al. 2019, "BAM!").

    train:
      distill:
        teachers: {sst: [runs/single/sst]}  # per task, finished runs (several: their averaged targets)
        temperature: 1.0    # the classifiers' targets softened at T (their loss scaled by T^2)
        anneal: linear      # the gold label's weight lambda: linear, 0 -> 1 over training (BAM!), or constant
        gold_weight: 0.0    # anneal constant: lambda
        out_of_fold: false  # each row's target only from the teachers that did not train on it (data.folds)

A task with teachers learns from lambda * its gold loss + (1 - lambda) * the soft loss against the teachers'
averaged target (kinds.py: class probabilities at T for SST, a probability for Quora, a score for STS); the other
tasks learn as before. Linear annealing sets lambda = optimizer updates done / all updates of the run.

The teachers' outputs on the run's training rows are computed once, before the first step (each teacher with its
own tokenizer and pair encoding), and kept in RUN_DIR/teacher_outputs.safetensors with their key (the teachers'
weight hashes, the rows' fingerprint), so a step costs what a plain step costs and a resume or a re-run reuses
them. The hashes are recorded in the run's config (`train.distill.identities`): a teacher retrained since is
refused on resume.

Sibling runs (the seeds of one student, NAME-SEED folders side by side) share the scoring: each (task, teacher)
output is written to RUN_DIR/teacher_outputs.parts/ as soon as it is scored, and a run takes what a sibling's
parts folder holds instead of scoring it again. While a run scores an output it holds the lock of a claim folder
beside it (run_folder.py's `fcntl.flock`, released however the process ends), so two seeds started at once split the teachers
between them and wait for each other's outputs; a claim whose process has died is taken over. The parts folder
goes when the run ends.

`check_teachers` runs before the run folder is touched: a teacher that is not a finished run, was not trained on
its task, or was trained on other rows of it than the same settings draw from the student's data files (its
recorded training-set fingerprint), and, with out_of_fold, rows that every teacher trained on, are each a
one-line error naming the key.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from .. import writes
from ..schema import Config
from ..data.batching import encode_examples
from ..data.loading import rows_fingerprint
from ..data.readers import Example
from ..errors import CheckpointError, ConfigError
from ..evaluate import predict_outputs
from ..run_folder import acquire, holder, release
from ..runs import check_run, load_run
from ..settings import Settings, names, register, setting
from ..tasks import Task
from .setup import training_examples

ANNEALS: dict[str, Callable[[int, int, float], float]] = names("train.distill.anneal", {  # (updates done, all
    "linear": lambda done, total, weight: min(1.0, done / max(1, total)),  # updates, gold_weight) -> lambda;
    "constant": lambda done, total, weight: weight,  # linear is BAM!'s teacher annealing
})


@register("train.distill")
@dataclass
class DistillSettings(Settings):
    """Distillation from finished runs (BAM!, Clark et al. 2019); off without teachers."""

    teachers: dict[str, list[str]] | None = setting(
        None, "task -> run folders; several: their averaged targets", keys="task")
    temperature: float = setting(1.0, "softmax / sigmoid temperature of the classifiers' targets (losses scaled by "
                                 "T^2)", check="positive")
    anneal: str = setting("linear", "weight of the gold label: linear (0 -> 1 over training, BAM!) | constant",
                          one_of="train.distill.anneal")
    gold_weight: float = setting(0.0, "anneal constant: the gold label's weight (0: the teachers' targets alone)",
                                 check="closed_unit")
    out_of_fold: bool = setting(False, "each row's target from the teachers that did not train on it (data.folds)")
    identities: dict[str, list[str]] | None = setting(None, "filled in by the run: each teacher's weights' sha256",
                                                      keys="task")

    def check(self, key, root):
        for task, folders in (self.teachers or {}).items():
            if not folders:
                raise ConfigError(f"{key}.teachers.{task}: name at least one teacher run folder")
            if not root.train.schedule.trains(task):
                raise ConfigError(f"{key}.teachers.{task}: train.schedule draws no {task} training batch (only "
                                  f"evaluated), so its teachers would teach nothing; drop them or train {task}")
        if self.out_of_fold and not self.teachers:
            raise ConfigError(f"{key}.out_of_fold: needs {key}.teachers")


CACHE = "teacher_outputs.safetensors"


@dataclass(frozen=True)
class Teacher:
    task: str
    folder: Path
    identity: str  # sha256 of its best weights and heads (first 16 hex digits)
    trained_ids: frozenset[str] | None  # out_of_fold: the rows it trained on


def weights_identity(best: Path) -> str:
    h = hashlib.sha256()
    for name in ("model.safetensors", "heads.safetensors"):
        with (best / name).open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def pin_teachers(cfg: Config) -> None:
    """Teacher folders as absolute paths in `cfg` (the saved config names them wherever a resume runs from)."""
    d = cfg.train.distill
    if d.teachers:
        d.teachers = {t: [str(Path(f).expanduser().resolve()) for f in fs] for t, fs in d.teachers.items()}


def name_identities(cfg: Config) -> None:
    """Put the identities of the teachers as they are now into `cfg` (those with no `best/` yet are left out; the
    run's own check names them)."""
    d = cfg.train.distill
    pin_teachers(cfg)
    if d.teachers and d.identities is None:
        try:
            found = {t: [weights_identity(Path(f) / "best") for f in fs if (Path(f) / "best").is_dir()]
                     for t, fs in d.teachers.items()}
        except OSError:
            return
        d.identities = found if all(len(found[t]) == len(d.teachers[t]) for t in found) else None


def recorded_rows(folder: Path, task: str) -> str:
    """The fingerprint of the rows a run trained `task` on, as its last checkpoint recorded it."""
    path = folder / "last" / "trainer_state.json"
    try:
        return json.loads(path.read_bytes())["data"][task]
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(f"{path}: unreadable or without the {task} training rows' fingerprint, so the rows "
                              "this teacher was trained on cannot be checked") from None


def check_teachers(cfg: Config, data_path: Path) -> dict[str, list[Teacher]]:
    """Each teacher of `cfg` checked against the student's data (see the module's doc); records their identities in
    `cfg.train.distill.identities` (refusing ones that differ from identities the config already names)."""
    d = cfg.train.distill
    pin_teachers(cfg)
    teachers: dict[str, list[Teacher]] = {}
    for name, folders in (d.teachers or {}).items():
        task = cfg.task(name)
        for i, folder in enumerate(folders):
            teachers.setdefault(name, []).append(check_teacher(task, Path(folder), f"train.distill.teachers.{name}[{i}]",
                                                               data_path, d.out_of_fold))
        if d.out_of_fold:
            rows = training_examples(cfg, task, data_path, lambda line: None)
            seen = [r.id for r in rows if all(r.id in t.trained_ids for t in teachers[name])]
            if seen:
                raise ConfigError(f"train.distill.teachers.{name}: with out_of_fold, {len(seen)} of the run's "
                                  f"{len(rows)} training rows (e.g. id {seen[0]}) were in every teacher's training data, "
                                  "so no teacher has an output for them; give teachers that each hold out a fold "
                                  "(data.folds, data.fold), all folds covered")
    identities = {n: [t.identity for t in ts] for n, ts in teachers.items()} or None
    if d.identities is not None and d.identities != identities:
        raise ConfigError(f"train.distill.identities: the teachers' weights are not the ones this config names "
                          f"({d.identities} named, {identities} now): a teacher was retrained or replaced")
    d.identities = identities
    return teachers


def check_teacher(task: Task, folder: Path, key: str, data_path: Path, out_of_fold: bool) -> Teacher:
    try:
        tcfg = check_run(folder)
        if task.name not in tcfg.tasks:
            raise ConfigError(f"{folder} was trained on {', '.join(tcfg.tasks)}, not {task.name}")
        problem = task.output_problem(tcfg.task(task.name))
        if problem:
            raise ConfigError(f"{folder}: its task {task.name} is not this run's ({problem}); a teacher's outputs "
                              "must mean what the student's do")
        recorded = recorded_rows(folder, task.name)
        ids = [r.id for r in training_examples(tcfg, task, data_path, lambda line: None)]
    except (CheckpointError, ConfigError) as e:
        raise ConfigError(f"{key}: {e}") from None
    if recorded != rows_fingerprint(ids):
        raise ConfigError(f"{key}: {folder} was trained on other {task.name} rows ({recorded}) than its settings draw "
                          f"from {data_path} ({rows_fingerprint(ids)}): train the teacher on the student's data files")
    return Teacher(task.name, folder, weights_identity(folder / "best"), frozenset(ids) if out_of_fold else None)


class Distiller:
    """The tasks' teacher targets (one per training row), mixed with the gold loss as the anneal schedule says."""

    def __init__(self, cfg: DistillSettings, tasks: dict[str, Task], outputs: dict[str, torch.Tensor],
                 masks: dict[str, torch.Tensor], total_updates: int):
        """`outputs[task]`: (teachers, rows, ...) in task units; `masks[task]`: (teachers, rows), which teacher's
        output counts for which row."""
        self.cfg, self.tasks, self.total_updates = cfg, tasks, total_updates
        self.targets: dict[str, torch.Tensor] = {}
        for name, out in outputs.items():
            target = tasks[name].kind.soft_target(out, cfg.temperature)
            weight = masks[name].float().reshape(*masks[name].shape, *[1] * (target.dim() - 2))
            self.targets[name] = (target * weight).sum(0) / weight.sum(0)

    def gold_weight(self, updates: int) -> float:
        """lambda after `updates` optimizer updates: the gold loss's share."""
        return ANNEALS[self.cfg.anneal](updates, self.total_updates, self.cfg.gold_weight)

    def loss(self, task: str, out: torch.Tensor, index: list[int], gold_loss: torch.Tensor,
             updates: int) -> torch.Tensor:
        """The loss of a batch of `task` (rows `index` of its training set): the gold loss, mixed with the soft loss."""
        target = self.targets.get(task)
        if target is None:
            return gold_loss
        lam = self.gold_weight(updates)
        if lam >= 1.0:
            return gold_loss
        soft = self.tasks[task].kind.soft_loss(out, target[index].to(out.device), self.cfg.temperature)
        return lam * gold_loss + (1 - lam) * soft


def rows_key(rows: list[Example]) -> dict[str, str]:
    """The rows' ids and texts (a sibling run may read the same ids from another data folder)."""
    return {"rows": rows_fingerprint([r.id for r in rows]),
            "texts": hashlib.sha1("\n".join("\t".join(r.texts) for r in rows).encode()).hexdigest()}


def cache_key(teachers: dict[str, list[Teacher]], rows: dict[str, list[Example]], out_of_fold: bool) -> str:
    """What the teachers' outputs depend on: their weights, the rows, and out-of-fold scoring."""
    return json.dumps({n: {"teachers": [t.identity for t in ts], **rows_key(rows[n]), "out_of_fold": out_of_fold}
                       for n, ts in sorted(teachers.items())}, sort_keys=True)


PARTS = "teacher_outputs.parts"  # RUN_DIR/PARTS/NAME.safetensors: one (task, teacher) output; NAME.claim/: its scorer's lock


class Part(NamedTuple):
    """One teacher's outputs on one task's rows: what sibling runs share while they score."""
    task: str
    teacher: Teacher
    mask: torch.Tensor  # (rows,) bool: the rows it scores
    key: str

    @property
    def name(self) -> str:
        return hashlib.sha1(self.key.encode()).hexdigest()[:24]


def parts_of(teachers: dict[str, list[Teacher]], rows: dict[str, list[Example]], out_of_fold: bool) -> list[Part]:
    parts = []
    for name, ts in teachers.items():
        for t in ts:  # out of fold: a teacher scores only the rows it did not train on
            mask = torch.tensor([t.trained_ids is None or r.id not in t.trained_ids for r in rows[name]])
            key = json.dumps({"task": name, "teacher": t.identity, **rows_key(rows[name]), "out_of_fold": out_of_fold},
                             sort_keys=True)
            parts.append(Part(name, t, mask, key))
    return parts


def claimed(folder: Path, part: Part) -> bool:
    """Whether a live process is scoring `part` into `folder`: it holds the claim folder's lock (run_folder.py's,
    released however the process ends, so a dead scorer's claim is free)."""
    return holder(folder / f"{part.name}.claim") is not None


def read_part(folder: Path, part: Part) -> torch.Tensor | None:
    found = read_cache(folder / f"{part.name}.safetensors", part.key)
    return None if found is None else found["outputs"]


def siblings(own: Path) -> list[Path]:
    """The parts folders of the run folders beside this run's."""
    return sorted(f for f in own.parent.parent.glob(f"*/{PARTS}") if f.resolve() != own.resolve())


def score_shared(parts: list[Part], rows: dict[str, list[Example]], own: Path | None, device: torch.device,
                 batch_size: int, log: Callable[[str], None], widths: dict[str, int],
                 poll: float = 2.0) -> dict[str, torch.Tensor]:
    """Each part's outputs (rows, ...) in task units: read from a parts folder beside `own` (this run's, or a
    sibling's), else scored here, claimed while it is scored and written to `own` when done (`own` None: every part
    scored here, nothing shared). A part a live sibling is scoring is waited for."""
    def scored(part: Part) -> torch.Tensor:
        out = teacher_outputs(part.teacher, [r for r, m in zip(rows[part.task], part.mask.tolist()) if m], device,
                              batch_size, log).cpu()
        width = widths[part.task]
        full = torch.zeros((len(rows[part.task]), *([width] if width > 1 else [])))
        full[part.mask] = out.reshape(-1, *full.shape[1:])
        return full

    if own is None or not parts or not own.parent.is_dir():
        return {p.name: scored(p) for p in parts}
    own.mkdir(exist_ok=True)
    done: dict[str, torch.Tensor] = {}
    waited = False
    while len(done) < len(parts):
        for part in (p for p in parts if p.name not in done):  # siblings looked for again at each part: one
            folders = [own, *siblings(own)]                     # started a moment later is seen at the next
            for folder in folders:
                if (found := read_part(folder, part)) is not None:
                    done[part.name] = found
                    if folder != own:
                        log(f"distill: {part.task} outputs of {part.teacher.folder} read from {folder}")
                    break
            if part.name in done or any(claimed(f, part) for f in folders[1:]):
                continue
            claim = own / f"{part.name}.claim"
            acquire(claim)  # this run folder has one writer, so the claim is free; a disk error surfaces
            try:  # two siblings claiming within the same microsecond both score it: a cost, never a wrong output
                done[part.name] = scored(part)
                writes.save_safetensors({"outputs": done[part.name].contiguous()}, own / f"{part.name}.safetensors",
                                        metadata={"key": part.key})
            finally:
                shutil.rmtree(claim, ignore_errors=True)
                release(claim)
        if len(done) < len(parts):
            if not waited:
                log(f"distill: waiting for {len(parts) - len(done)} teacher output(s) a sibling run is scoring")
                waited = True
            time.sleep(poll)
    return done


def read_cache(path: Path, key: str) -> dict[str, torch.Tensor] | None:
    """The cached tensors when the file holds outputs of this key (anything else: None, they are computed again)."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as f:
            if (f.metadata() or {}).get("key") != key:
                return None
        return load_file(str(path))
    except (OSError, SafetensorError, ValueError):
        return None


def teacher_outputs(teacher: Teacher, rows: list[Example], device: torch.device, batch_size: int,
                    log: Callable[[str], None]) -> torch.Tensor:
    """One teacher's outputs (task units) on `rows`, encoded as the teacher's own tokenizer and head want them."""
    t0 = time.time()
    _, model, tokenizer = load_run(teacher.folder)  # leaves the student's random stream untouched
    model.to(device)
    data = encode_examples(rows, tokenizer, model.joint_input(teacher.task))
    out = predict_outputs(model, teacher.task, data, tokenizer, batch_size, device, progress=True).value
    log(f"distill: teacher {teacher.folder} ({teacher.identity}) scored {len(rows)} {teacher.task} training rows "
        f"in {time.time() - t0:.0f} s")
    if not torch.isfinite(out).all():
        raise CheckpointError(f"{teacher.folder}: non-finite outputs on {int((~torch.isfinite(out)).sum())} "
                              f"{teacher.task} training rows; it cannot teach")
    return out


class TeacherOutputs:
    """The teachers' outputs on the run's training rows: read from RUN_DIR/teacher_outputs.safetensors when it
    holds them for these teachers and rows, else from a sibling run folder's that does (another seed of the same
    student: the outputs depend only on the teachers' weights and the rows, both in the key), else computed; written
    by `keep` once the run folder is open. A sibling's file is only read."""

    def __init__(self, cfg: Config, teachers: dict[str, list[Teacher]], rows: dict[str, list[Example]],
                 run_dir: Path, device: torch.device, log: Callable[[str], None], share: bool = True):
        """`share`: score through RUN_DIR/teacher_outputs.parts with sibling runs (the process that writes the
        run folder); otherwise every output is scored here."""
        self.key = cache_key(teachers, rows, cfg.train.distill.out_of_fold)
        source = run_dir / CACHE
        cached = read_cache(source, self.key) if teachers else None
        for sibling in sorted(run_dir.parent.glob(f"*/{CACHE}")) if teachers and cached is None else []:
            if sibling.parent.resolve() != run_dir.resolve() and (cached := read_cache(sibling, self.key)) is not None:
                source = sibling
                break
        self.fresh = cached is None and bool(teachers)
        if cached is not None:
            log(f"distill: teacher outputs read from {source}" + ("" if source == run_dir / CACHE else
                                                                  " (the same teachers and training rows)"))
            self.tensors = cached
            return
        parts = parts_of(teachers, rows, cfg.train.distill.out_of_fold)
        outputs = score_shared(parts, rows, run_dir / PARTS if share else None, device, cfg.eval.batch_size, log,
                                   {n: cfg.task(n).num_outputs for n in rows})
        self.tensors = {}
        for name in teachers:
            mine = [p for p in parts if p.task == name]
            self.tensors[f"{name}.outputs"] = torch.stack([outputs[p.name] for p in mine])
            self.tensors[f"{name}.mask"] = torch.stack([p.mask for p in mine]).to(torch.uint8)

    def keep(self, run_dir: Path) -> None:
        """Write the outputs into the run folder (for a resume or a re-run) unless it holds them already."""
        if self.tensors and (self.fresh or not (run_dir / CACHE).is_file()):
            writes.save_safetensors({k: v.contiguous() for k, v in self.tensors.items()}, run_dir / CACHE,
                                    metadata={"key": self.key})
            self.fresh = False

    @staticmethod
    def tidy(run_dir: Path) -> None:
        """The run has ended: its parts folder (kept while it trained, for siblings still scoring) goes."""
        shutil.rmtree(run_dir / PARTS, ignore_errors=True)

    def distiller(self, cfg: DistillSettings, tasks: dict[str, Task], total_updates: int) -> Distiller:
        names = [k.removesuffix(".outputs") for k in self.tensors if k.endswith(".outputs")]
        return Distiller(cfg, tasks, {n: self.tensors[f"{n}.outputs"] for n in names},
                         {n: self.tensors[f"{n}.mask"].bool() for n in names}, total_updates)


def reuse_identities(saved: Config, new: Config) -> None:
    """A resume with a config file: the teachers' identities the run recorded (a config file rarely names them)."""
    if new.train.distill.identities is None:
        new.train.distill.identities = saved.train.distill.identities
    pin_teachers(new)


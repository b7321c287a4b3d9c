"""`minbert recipe FILE --out DIR`: several runs that build on each other (teachers, then their student), as one
command that can be stopped and rerun at any point.

The recipe file names its runs in the order they train; each has a `config` (relative to the recipe file or
the working directory), optional `set` overrides and optional `seeds` (one run per seed, NAME-SEED). In a
`set` value, `{run:NAME}` is the folder of an earlier run of the recipe (DIR/NAME), e.g. a teacher, and in a
run with seeds `{seed}` is the run's seed (`{run:student-{seed}}`: the same seed's student):

    runs:
      teacher-sst: {config: ../single/sst.yaml}
      student:
        config: ../distill/bam-sst.yaml
        set: ["train.distill.teachers={sst: [{run:teacher-sst}]}"]
        seeds: [11711, 11712]

Every run's config is validated, and every run's device, backbone and data checked, before the first one
starts. A run is done when its `recipe_result.json` parses and records the config wanted now (the experiments
layer, as `ablate` and `sweep`): it is not trained again; a run stopped part way continues from its last
checkpoint. DIR/recipe.json and DIR/recipe.md list every run's dev metrics and seconds.

A run's `more_seeds: {seeds: [...], above: FILE}` trains those seeds too, but only when its first seed's dev
overall is above the `overall` of FILE (a `best_metrics.json`, e.g. the recipe to beat): more seeds for the runs
worth them (the seed reports' systems against best-cpu). Otherwise they are skipped, each with its reason in the
tables; the comparison is made again at every rerun.

With `lanes` above 1 (`--lanes N`), up to N runs train at once, each in a process of its own (`tools/lanes.py`;
its output in DIR/NAME.log), a run starting once the runs it names with `{run:NAME}` are done: on two cores,
two runs of one thread each (`--set train.threads=1`).
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import NamedTuple

from .. import writes
from ..config import read_yaml
from ..schema import Config, load_config
from ..errors import ConfigError
from ..evaluate import format_metrics
from ..run_folder import RunFolder
from ..tasks import metric_columns
from ..training.distill import name_identities
from ..training.init_from import name_init
from .experiments import finished_result, resolve_base, train_or_continue
from .lanes import Job, Lanes

RESULT_FIELDS = {"run": str, "seconds": (int, float), "metrics": dict, "config": dict}
RUN_REFERENCE = re.compile(r"\{run:([^}]*)\}")
SEED = "{seed}"  # in a seeded run's `set` values: its seed
RUN_KEYS = {"config", "set", "seeds", "more_seeds"}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
AGAIN = "the same minbert recipe command"


class RecipeRun(NamedTuple):
    name: str
    cfg: Config
    needs: frozenset[str]  # the earlier runs it names with {run:NAME} (and, for more seeds, its first seed's run)
    above: tuple[str, Path] | None = None  # more seeds: trained only when this run's dev overall is above FILE's


def more_seeds(spec: object, path: Path, where: str) -> tuple[list[int], Path | None]:
    """A run's `more_seeds`: the seeds and the file of the overall to beat (which must be readable now)."""
    if spec is None:
        return [], None
    if not isinstance(spec, dict) or set(spec) != {"seeds", "above"} or not isinstance(spec["seeds"], list) \
            or not spec["seeds"] or not all(isinstance(s, int) and not isinstance(s, bool) for s in spec["seeds"]):
        raise ConfigError(f"{where}.more_seeds: expected {{seeds: [a list of integers], above: a best_metrics.json}}")
    bar = resolve_base(path, str(spec["above"]))
    overall_of(bar, f"{where}.more_seeds.above")
    return spec["seeds"], bar


def overall_of(path: Path, key: str) -> float:
    try:
        overall = json.loads(path.read_text())["overall"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{key}: {path} holds no readable dev overall ({type(e).__name__}: {e})") from None
    if not isinstance(overall, (int, float)):
        raise ConfigError(f"{key}: {path}: overall is not a number")
    return float(overall)


def skipped(run: RecipeRun, out_dir: Path) -> dict | None:
    """A more-seeds run's result when its first seed did not beat the bar: skipped, with the reason."""
    if run.above is None:
        return None
    first, bar = run.above
    got = json.loads((out_dir / first / "recipe_result.json").read_text())["metrics"].get("overall")
    wanted = overall_of(bar, f"{run.name}: more_seeds.above")
    if got is not None and got > wanted:
        return None
    why = f"{first}'s dev overall {'(none)' if got is None else f'{got:.4f}'} is not above {wanted:.4f} ({bar})"
    log(f"recipe: {run.name} skipped: {why}")
    return {"run": run.name, "metrics": {}, "seconds": 0, "skipped": why}


def read_recipe(path: Path, out_dir: Path, extra: list[str]) -> list[RecipeRun]:
    """The recipe's runs in order, each with its validated config; a problem is a `ConfigError` naming the run."""
    raw = read_yaml(path, "recipe")
    if set(raw) != {"runs"} or not isinstance(raw["runs"], dict) or not raw["runs"]:
        raise ConfigError(f"{path}: expected one key, runs: a mapping of run names to their settings")
    runs: list[RecipeRun] = []
    for name, spec in raw["runs"].items():
        where = f"{path}: runs.{name}"
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ConfigError(f"{where}: a run name is letters, digits, '.', '_' and '-'")
        if not isinstance(spec, dict) or "config" not in spec or set(spec) - RUN_KEYS:
            raise ConfigError(f"{where}: expected config (a file), and optionally set (a list), seeds (a list) and "
                              "more_seeds")
        sets, seeds = spec.get("set") or [], spec.get("seeds")
        extra_seeds, bar = more_seeds(spec.get("more_seeds"), path, where)
        if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
            raise ConfigError(f"{where}.set: expected a list of KEY=VALUE strings")
        if seeds is not None and (not isinstance(seeds, list) or not seeds
                                  or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
            raise ConfigError(f"{where}.seeds: expected a non-empty list of integers")
        base = resolve_base(path, str(spec["config"]))
        done = {run.name for run in runs}
        if not seeds and any(SEED in s for s in sets):
            raise ConfigError(f"{where}.set: {SEED} stands for the run's seed, and this run has no seeds")
        if extra_seeds and not seeds:
            raise ConfigError(f"{where}.more_seeds: needs seeds (the first one's run is compared with the bar)")
        every = [*(seeds or []), *extra_seeds]
        if len(set(every)) < len(every):
            raise ConfigError(f"{where}: seed {next(s for s in every if every.count(s) > 1)} is given twice (seeds and "
                              "more_seeds name each seed once)")
        first = None if not seeds else f"{name}-{seeds[0]}"
        for seed in [*(seeds or [None]), *extra_seeds]:
            seeded = [] if seed is None else [f"train.seed={seed}"]
            run = name if seed is None else f"{name}-{seed}"
            more = seed in extra_seeds  # (seeds and more_seeds share no seed: refused above)
            own = [s.replace(SEED, str(seed)) for s in sets]  # e.g. {run:student-{seed}}: the same seed's student
            needs = frozenset(m.group(1) for s in own for m in RUN_REFERENCE.finditer(s))
            own = [RUN_REFERENCE.sub(lambda m: referenced(m.group(1), done, out_dir, where), s) for s in own]
            try:
                runs.append(RecipeRun(run, load_config(base, own + seeded + extra), needs | ({first} if more else set()),
                                      (first, bar) if more else None))
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
    return runs


def referenced(name: str, done: set[str], out_dir: Path, where: str) -> str:
    if name not in done:
        raise ConfigError(f"{where}: {{run:{name}}} names no run before this one (runs train in the file's order)")
    return str((out_dir / name).resolve())


def recipe(path: Path, out_dir: Path, data_dir: str | None, extra: list[str], lanes: int = 1,
           lane: str | None = None) -> list[dict]:
    """Train the recipe's runs not done yet, `lanes` at a time; returns every run's result in the file's order.
    `lane` names the one run a child process of `lanes` trains (the parent has checked and locked DIR)."""
    runs = read_recipe(path, out_dir, extra)
    if lane is not None:
        return [run_one(next(r for r in runs if r.name == lane), out_dir, data_dir)]
    from ..preflight import preflight
    for run in runs:  # device, backbone and data of every run before the first starts (teachers: when used)
        preflight(run.cfg, data_dir)
    with RunFolder.lock(out_dir):
        if lanes == 1:
            results = [run_one(run, out_dir, data_dir) for run in runs]
        else:
            results = run_in_lanes(path, runs, out_dir, data_dir, extra, lanes)
        write_tables(path, results, out_dir)
        return results


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def dev_line(metrics: dict) -> str:
    """A run's best dev metrics and the epoch they are of, for a log line."""
    return f"{format_metrics({k: v for k, v in metrics.items() if k != 'epoch'})}, epoch {metrics.get('epoch')}"


def done_before(run: RecipeRun, out_dir: Path) -> dict | None:
    """The run's result when it was done before with this config (and, for a student, these teachers), or it is
    a more-seeds run skipped."""
    if any(not (out_dir / name / "recipe_result.json").is_file() for name in run.needs):
        return None  # a teacher to be trained first: its student is not done
    if (result := skipped(run, out_dir)) is not None:
        return result
    name_identities(run.cfg)  # a student is done only while its teachers are the ones it learned from
    name_init(run.cfg)  # and a run on top of another only while that one's weights are the ones it started from
    earlier = finished_result(out_dir / run.name / "recipe_result.json", RESULT_FIELDS, run.cfg.to_dict(), log)
    if earlier is None:
        return None
    log(f"recipe: {run.name} done before ({dev_line(earlier['metrics'])})")
    return {k: v for k, v in earlier.items() if k != "config"}


def run_one(run: RecipeRun, out_dir: Path, data_dir: str | None) -> dict:
    """One run of the recipe, trained (or continued) unless done before with this config; its result."""
    earlier = done_before(run, out_dir)
    if earlier is not None:
        return earlier
    done = out_dir / run.name / "recipe_result.json"
    wanted = run.cfg.to_dict()
    log(f"recipe: training {run.name}")
    best, seconds = train_or_continue(run.cfg, out_dir / run.name, data_dir, log, AGAIN,
                                      may_continue=not done.exists())
    result = {"run": run.name, "metrics": best, "seconds": seconds}
    writes.write_text(done, json.dumps({**result, "config": wanted}, indent=2) + "\n")
    return result


def run_in_lanes(path: Path, runs: list[RecipeRun], out_dir: Path, data_dir: str | None, extra: list[str],
                 lanes: int) -> list[dict]:
    """Every run in a child process (`minbert recipe ... --lane NAME`), up to `lanes` at once."""
    cores = os.cpu_count() or 1
    threads = max(run.cfg.train.threads or cores for run in runs)
    if threads * lanes > cores:
        log(f"recipe: note: {lanes} lanes of up to {threads} thread{'s' if threads > 1 else ''} each share this machine's {cores} cores"
            + ("" if threads == 1 else f" (train.threads={max(1, cores // lanes)} fits them)"))
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "minbert", "recipe", str(path), "--out", str(out_dir)]
    command += [] if data_dir is None else ["--data-dir", str(data_dir)]
    command += [arg for s in extra for arg in ("--set", s)]
    results = {run.name: r for run in runs if (r := done_before(run, out_dir)) is not None}
    jobs = [Job(run.name, run.needs, [*command, "--lane", run.name], out_dir / f"{run.name}.log")
            for run in runs if run.name not in results]

    def collect(name: str) -> None:
        if (result := skipped(next(r for r in runs if r.name == name), out_dir)) is not None:
            results[name] = result  # the child found the bar not beaten
            return
        result = json.loads((out_dir / name / "recipe_result.json").read_text())
        results[name] = {k: v for k, v in result.items() if k != "config"}
        log(f"recipe: {name} done ({dev_line(result['metrics'])})")

    Lanes(jobs, lanes, log, done=set(results)).run(collect, f"rerun {AGAIN} to continue (finished runs are kept; a paused one "
                                         "continues from its last checkpoint)")
    return [results[run.name] for run in runs]


def write_tables(path: Path, results: list[dict], out_dir: Path) -> None:
    writes.write_text(out_dir / "recipe.json", json.dumps(results, indent=2) + "\n")
    columns = metric_columns([r["metrics"] for r in results if "metrics" in r])
    lines = [f"# Recipe {path}", "", "Dev metrics of each run's best epoch; seconds of training and evaluation.", "",
             "| run | " + " | ".join(columns) + " | best epoch | seconds |", "|---|" + "---|" * len(columns) + "---|---|"]
    for r in results:
        cells = " | ".join(f"{r['metrics'][c]:.4f}" if c in r["metrics"] else "" for c in columns)
        lines.append(f"| {r['run']} | {cells} | {r['metrics'].get('epoch')} | {r['seconds']} |" if "skipped" not in r
                     else f"| {r['run']} | skipped: {r['skipped']} |" + " |" * (len(columns) + 1))
    writes.write_text(out_dir / "recipe.md", "\n".join(lines) + "\n")

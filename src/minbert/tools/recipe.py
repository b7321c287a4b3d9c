"""`minbert recipe FILE --out DIR`: several runs that build on each other (teachers, then their student), as one
command that can be stopped and rerun at any point.

The recipe file names its runs in the order they train; each has a `config` (relative to the recipe file or
the working directory), optional `set` overrides and optional `seeds` (one run per seed, NAME-SEED). In a
`set` value, `{run:NAME}` is the folder of an earlier run of the recipe (DIR/NAME), e.g. a teacher:

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
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from ..config import Config, load_config, read_yaml
from ..errors import ConfigError
from ..evaluate import format_metrics
from ..run_folder import RunFolder
from ..tasks import TASKS
from ..training.distill import name_identities
from .experiments import finished_result, resolve_base, train_or_continue

RESULT_FIELDS = {"run": str, "seconds": (int, float), "metrics": dict, "config": dict}
RUN_REFERENCE = re.compile(r"\{run:([^}]*)\}")
RUN_KEYS = {"config", "set", "seeds"}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def read_recipe(path: Path, out_dir: Path, extra: list[str]) -> list[tuple[str, Config]]:
    """The recipe's runs in order, each (name, validated config); a problem is a `ConfigError` naming the run."""
    raw = read_yaml(path, "recipe")
    if set(raw) != {"runs"} or not isinstance(raw["runs"], dict) or not raw["runs"]:
        raise ConfigError(f"{path}: expected one key, runs: a mapping of run names to their settings")
    runs: list[tuple[str, Config]] = []
    for name, spec in raw["runs"].items():
        where = f"{path}: runs.{name}"
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ConfigError(f"{where}: a run name is letters, digits, '.', '_' and '-'")
        if not isinstance(spec, dict) or "config" not in spec or set(spec) - RUN_KEYS:
            raise ConfigError(f"{where}: expected config (a file), and optionally set (a list) and seeds (a list)")
        sets, seeds = spec.get("set") or [], spec.get("seeds")
        if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
            raise ConfigError(f"{where}.set: expected a list of KEY=VALUE strings")
        if seeds is not None and (not isinstance(seeds, list) or not seeds
                                  or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
            raise ConfigError(f"{where}.seeds: expected a non-empty list of integers")
        base = resolve_base(path, str(spec["config"]))
        done = {n for n, _ in runs}
        sets = [RUN_REFERENCE.sub(lambda m: referenced(m.group(1), done, out_dir, where), s) for s in sets]
        for seed in seeds or [None]:
            seeded = [] if seed is None else [f"train.seed={seed}"]
            run = name if seed is None else f"{name}-{seed}"
            try:
                runs.append((run, load_config(base, sets + seeded + extra)))
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
    return runs


def referenced(name: str, done: set[str], out_dir: Path, where: str) -> str:
    if name not in done:
        raise ConfigError(f"{where}: {{run:{name}}} names no run before this one (runs train in the file's order)")
    return str((out_dir / name).resolve())


def recipe(path: Path, out_dir: Path, data_dir: str | None, extra: list[str]) -> list[dict]:
    runs = read_recipe(path, out_dir, extra)
    from ..preflight import preflight
    for _, cfg in runs:  # device, backbone and data of every run before the first starts (teachers: when used)
        preflight(cfg, data_dir)
    with RunFolder.lock(out_dir):
        return run_all(path, runs, out_dir, data_dir)


def run_all(path: Path, runs: list[tuple[str, Config]], out_dir: Path, data_dir: str | None) -> list[dict]:
    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    results = []
    for name, cfg in runs:
        done = out_dir / name / "recipe_result.json"
        name_identities(cfg)  # a student is done only while its teachers are the ones it learned from
        wanted = cfg.to_dict()
        earlier = finished_result(done, RESULT_FIELDS, wanted, log)
        if earlier is not None:
            log(f"recipe: {name} done before ({format_metrics(earlier['metrics'])})")
            results.append({k: v for k, v in earlier.items() if k != "config"})
            continue
        log(f"recipe: training {name}")
        best, seconds = train_or_continue(cfg, out_dir / name, data_dir, log, "the same minbert recipe command",
                                          may_continue=not done.exists())
        results.append({"run": name, "metrics": best, "seconds": seconds})
        done.write_text(json.dumps({**results[-1], "config": wanted}, indent=2) + "\n")
    (out_dir / "recipe.json").write_text(json.dumps(results, indent=2) + "\n")
    columns = [k for k in (*TASKS, "overall") if any(k in r["metrics"] for r in results)]
    lines = [f"# Recipe {path}", "", "Dev metrics of each run's best epoch; seconds of training and evaluation.", "",
             "| run | " + " | ".join(columns) + " | best epoch | seconds |", "|---|" + "---|" * len(columns) + "---|---|"]
    for r in results:
        cells = " | ".join(f"{r['metrics'][c]:.4f}" if c in r["metrics"] else "" for c in columns)
        lines.append(f"| {r['run']} | {cells} | {r['metrics'].get('epoch')} | {r['seconds']} |")
    (out_dir / "recipe.md").write_text("\n".join(lines) + "\n")
    return results

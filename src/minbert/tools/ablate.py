"""`minbert ablate FILE`: a base config plus named variants (config deltas), each trained over several
seeds, tabulated as dev SST / Para / STS / overall (mean ± std over seeds) and training time.

The ablation file holds:
  title:    a heading for the table
  base:     a config file (relative to the ablation file or the working directory)
  set:      overrides for every run ({dotted.key: value})
  budget:   overrides applied only with `--budget` (subsampled data, fewer steps: a CPU-sized table)
  seeds:    list of seeds (train.seed); `--seeds N` keeps the first N
  variants: name -> {dotted.key: value, ...}; `extends: OTHER` starts from another variant's delta
            (the seed reports' tables are cumulative: "RSS + MP" is "RSS" plus mean pooling); a variant's
            own `budget: {...}` scales its own settings under `--budget` (e.g. a smaller random subset)
Overrides apply in the order base, set, budget, variant, variant budget.
Every run's config is validated before the first run starts. A finished run (its `ablation_result.json`
exists and records the same config) is not trained again, so an interrupted table continues where it
stopped; a run whose config changed since, or that never finished, is trained again from the start
(it is this ablation's own run folder: replaced without `--overwrite`). The output folder and each run
are locked while written (one `minbert ablate` per folder).
"""
from __future__ import annotations

import json
import re
import statistics
import sys
import time
from pathlib import Path

from ..config import Config, ConfigError, _build, load_config, read_yaml
from ..run_folder import RunFolder
from .sweep import resolve_base
from ..tasks import TASKS
from ..training.interrupts import TrainingInterrupted
from ..training.trainer import train

KEYS = {"title", "base", "set", "budget", "seeds", "variants"}
COLUMNS = (*TASKS, "overall")


def _assignments(delta: dict, where: str) -> list[str]:
    if not isinstance(delta, dict):
        raise ConfigError(f"{where}: expected a mapping of dotted keys to values, got {delta!r}")
    return [f"{k}={json.dumps(v)}" for k, v in delta.items()]


def variant_deltas(variants: dict, path: Path) -> dict[str, dict]:
    """Each variant's full delta, with `extends` chains resolved (cycles and unknown names are errors)."""
    if not isinstance(variants, dict) or not variants:
        raise ConfigError(f"{path}: variants must map each name to a config delta")
    resolved: dict[str, dict] = {}

    def resolve(name: str, seen: tuple[str, ...]) -> dict:
        if name in resolved:
            return resolved[name]
        if name in seen:
            raise ConfigError(f"{path}: variants: {' -> '.join(seen + (name,))} extends itself")
        if name not in variants:
            raise ConfigError(f"{path}: variants.{seen[-1]}: extends unknown variant {name!r}")
        own = variants[name] or {}
        if not isinstance(own, dict):
            raise ConfigError(f"{path}: variants.{name}: expected a mapping, got {own!r}")
        own = dict(own)
        parent = own.pop("extends", None)
        inherited = resolve(parent, seen + (name,)) if parent else {}
        budget = {**inherited.get("budget", {}), **(own.pop("budget", None) or {})}
        resolved[name] = {**{k: v for k, v in inherited.items() if k != "budget"}, **own}
        if budget:
            resolved[name]["budget"] = budget
        return resolved[name]

    return {name: resolve(name, ()) for name in variants}


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "variant"


def plan(path: Path, use_budget: bool, n_seeds: int | None, only: list[str] | None,
         extra: list[str]) -> tuple[dict, list[tuple[str, int, Config]]]:
    raw = read_yaml(path, "ablation")
    unknown = set(raw) - KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key {sorted(unknown)[0]} (known: {', '.join(sorted(KEYS))})")
    seeds = raw.get("seeds") or [11711]
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{path}: seeds must be a list of integers")
    seeds = seeds[:n_seeds] if n_seeds else seeds
    base = resolve_base(path, raw.get("base"))
    common = _assignments(raw.get("set") or {}, f"{path}: set")
    if use_budget:
        common += _assignments(raw.get("budget") or {}, f"{path}: budget")
    deltas = variant_deltas(raw.get("variants"), path)
    if only:
        missing = [o for o in only if o not in deltas]
        if missing:
            raise ConfigError(f"--only: no variant named {missing[0]!r} (variants: {', '.join(deltas)})")
        deltas = {k: v for k, v in deltas.items() if k in only}
    runs = []
    for name, delta in deltas.items():
        own = _assignments({k: v for k, v in delta.items() if k != "budget"}, name)
        if use_budget:
            own += _assignments(delta.get("budget", {}), f"{name}: budget")
        for seed in seeds:
            try:
                cfg = load_config(base, common + own + [f"train.seed={seed}"] + extra)
            except ConfigError as e:
                raise ConfigError(f"{path}: variant {name!r}: {e}") from None
            runs.append((name, seed, cfg))
    return {"title": raw.get("title") or path.stem, "file": str(path), "budget": use_budget, "seeds": seeds,
            "deltas": deltas}, runs


def same_config(earlier: dict | None, wanted: dict) -> bool:
    """Whether a finished run used this config; settings added to minbert since then count at their defaults."""
    try:
        return earlier is not None and _build(Config, earlier).to_dict() == wanted
    except ConfigError:  # a setting that no longer exists
        return False


def read_result(path: Path) -> dict | None:
    """A finished run's ablation_result.json, or None when there is none or it cannot be used (it is rerun)."""
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    keys = {"variant": str, "seed": int, "metrics": dict, "seconds": (int, float), "config": dict}
    if not isinstance(result, dict) or not all(isinstance(result.get(k), t) for k, t in keys.items()) \
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in result["metrics"].values()):
        return None
    return result


def summarise(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def ablate(path: Path, out_dir: Path, data_dir: str | None, extra: list[str], use_budget: bool = False,
           n_seeds: int | None = None, only: list[str] | None = None, log=None) -> dict:
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))  # stdout: the JSON result only
    meta, runs = plan(path, use_budget, n_seeds, only, extra)
    from ..preflight import preflight
    for name, seed, cfg in runs:  # every run's device, backbone and data before anything is written
        preflight(cfg, data_dir)
    with RunFolder.lock(out_dir):
        return run_all(meta, runs, out_dir, data_dir, extra, log)


def run_all(meta: dict, runs: list[tuple[str, int, Config]], out_dir: Path, data_dir: str | None,
            extra: list[str], log) -> dict:
    per_run = []
    for i, (name, seed, cfg) in enumerate(runs, 1):
        run_dir = out_dir / slug(name) / f"seed-{seed}"
        done = run_dir / "ablation_result.json"
        wanted = cfg.to_dict()
        earlier = read_result(done)
        if earlier is not None and same_config(earlier.get("config"), wanted):
            result = earlier
            log(f"ablate: [{i}/{len(runs)}] {name} seed {seed}: done before, {result['seconds']} s")
        else:
            why = " (its config changed since the earlier run)" if earlier is not None else ""
            log(f"ablate: [{i}/{len(runs)}] {name} seed {seed} -> {run_dir}{why}")
            start = time.time()
            try:
                best = train(cfg, run_dir, data_dir, overwrite=True)  # this ablation's own run folder
            except TrainingInterrupted as e:
                e.hint = "rerun the same minbert ablate command to continue (finished runs are kept; this one starts over)"
                raise
            result = {"variant": name, "seed": seed, "metrics": {k: best[k] for k in COLUMNS if k in best},
                      "epoch": best.get("epoch"), "seconds": round(time.time() - start), "config": wanted}
            done.write_text(json.dumps(result, indent=2) + "\n")
        per_run.append(result)
    rows = []
    for name in meta["deltas"]:
        mine = [r for r in per_run if r["variant"] == name]
        if not mine:
            continue
        metrics = {k: summarise([r["metrics"][k] for r in mine]) for k in COLUMNS if k in mine[0]["metrics"]}
        rows.append({"variant": name, "delta": meta["deltas"][name], "seeds": [r["seed"] for r in mine],
                     "metrics": metrics, "seconds": summarise([r["seconds"] for r in mine])})
    runs_out = [{k: v for k, v in r.items() if k != "config"} for r in per_run]
    report = {**{k: meta[k] for k in ("title", "file", "budget", "seeds")}, "extra": extra, "rows": rows, "runs": runs_out}
    (out_dir / "ablation.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "ablation.md").write_text(render(report))
    return report


def render(report: dict) -> str:
    rows = report["rows"]
    columns = [k for k in COLUMNS if any(k in r["metrics"] for r in rows)]
    names = {**{n: t.column for n, t in TASKS.items()}, "overall": "overall"}
    command = f"minbert ablate {report['file']}" + (" --budget" if report["budget"] else "") + \
        "".join(f" --set {e}" for e in report["extra"])
    lines = [f"# {report['title']}", "",
             f"Command: `{command}`; dev scores, mean ± std over seeds {report['seeds']}"
             f"{' (budget settings: a CPU-sized table, not full-data scores)' if report['budget'] else ''}.", "",
             "| variant | " + " | ".join(names[c] for c in columns) + " | train s | change |",
             "|---|" + "---|" * len(columns) + "---|---|"]
    for r in rows:
        cells = []
        for c in columns:
            m = r["metrics"].get(c)
            cells.append("" if m is None else f"{m['mean']:.3f}" + (f" ± {m['std']:.3f}" if len(r["seeds"]) > 1 else ""))
        shown = {k: v for k, v in r["delta"].items() if k != "budget"}
        if report["budget"]:
            shown.update(r["delta"].get("budget", {}))
        delta = ", ".join(f"{k}={json.dumps(v)}" for k, v in shown.items()) or "(base)"
        lines.append(f"| {r['variant'].replace('|', chr(92) + '|')} | " + " | ".join(cells) + f" | {r['seconds']['mean']:.0f} | `{delta}` |")
    return "\n".join(lines) + "\n"

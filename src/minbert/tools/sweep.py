"""`minbert sweep FILE`: a grid over any config keys, each point trained, ranked by the dev score.

The sweep file holds `base` (a config file, relative to the sweep file or the working directory),
`grid` (dotted key -> list of values) and optionally `set` (overrides for every point); a file with `space`
instead is a search (search_space.py, search.py). Every point's
config is validated before the first run starts, so a typo costs nothing. A point that finished before
with the same config (its `sweep_result.json`) is not trained again, so rerunning an interrupted sweep
continues it: a point that never finished continues from its last checkpoint, one that changed is trained
again from the start (the sweep's own run folder; see `experiments`). The output folder and each run are
locked while written.
"""
from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

from .. import writes
from ..errors import ConfigError
from ..config import read_yaml
from ..schema import Config, load_config
from ..run_folder import RunFolder
from ..tasks import metric_columns
from ..evaluate import selection_score
from .experiments import finished_result, resolve_base, train_or_continue

RESULT_FIELDS = {"run": str, "score": (int, float), "seconds": (int, float), "config": dict}


def is_search(path: Path) -> bool:
    """Whether the file holds a search space (`space:`, run by search.py) rather than a grid."""
    raw = read_yaml(path, "sweep")
    return "space" in raw and "grid" not in raw


def read_sweep(path: Path) -> tuple[Path | None, dict[str, list], list[str]]:
    raw = read_yaml(path, "sweep")
    unknown = set(raw) - {"base", "grid", "set"}
    if unknown:
        raise ConfigError(f"{path}: unknown key {sorted(unknown)[0]} (known: base, grid, set; a search: base, set, space, search)")
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict) or not grid or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(f"{path}: grid must map each key to a non-empty list of values")
    return resolve_base(path, raw.get("base")), grid, list(raw.get("set") or [])


def points(base: Path | None, grid: dict[str, list], common: list[str]) -> list[tuple[str, Config]]:
    keys = list(grid)
    out = []
    for values in itertools.product(*(grid[k] for k in keys)):
        assignment = [f"{k}={json.dumps(v)}" for k, v in zip(keys, values)]
        name = "_".join(f"{k.split('.')[-1]}={v}" for k, v in zip(keys, values))
        out.append((name, load_config(base, common + assignment)))
    return out


def sweep(path: Path, out_dir: Path, data_dir: str | None, extra: list[str]) -> list[dict]:
    base, grid, common = read_sweep(path)
    runs = points(base, grid, common + extra)
    from ..preflight import preflight
    for name, cfg in runs:  # every point's device, backbone and data before the first run starts
        preflight(cfg, data_dir)
    with RunFolder.lock(out_dir):
        return run_points(path, grid, runs, out_dir, data_dir)


def run_points(path: Path, grid: dict[str, list], runs: list[tuple[str, Config]], out_dir: Path,
               data_dir: str | None) -> list[dict]:
    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    results = []
    for name, cfg in runs:
        done = out_dir / name / "sweep_result.json"
        wanted = cfg.to_dict()
        earlier = finished_result(done, RESULT_FIELDS, wanted, log)
        if earlier is not None:
            results.append({k: v for k, v in earlier.items() if k != "config"})
            continue
        best, seconds = train_or_continue(cfg, out_dir / name, data_dir, log, "the same minbert sweep command",
                                          may_continue=not done.exists())
        results.append({"run": name, **{k: v for k, v in best.items()},
                        "score": selection_score(best, cfg.tasks), "seconds": seconds})
        writes.write_text(done, json.dumps({**results[-1], "config": wanted}, indent=2) + "\n")
    results.sort(key=lambda r: -r["score"])
    writes.write_text(out_dir / "sweep.json", json.dumps(results, indent=2) + "\n")
    metrics = metric_columns(results)
    lines = [f"# Sweep {path}", "", f"Grid: {json.dumps(grid)}; ranked by dev score.", "",
             "| rank | run | " + " | ".join(metrics) + " | best epoch | seconds |",
             "|---|---|" + "---|" * len(metrics) + "---|---|"]
    for i, r in enumerate(results, 1):
        cells = " | ".join(f"{r[m]:.4f}" if m in r else "" for m in metrics)
        lines.append(f"| {i} | {r['run']} | {cells} | {r.get('epoch')} | {r['seconds']} |")
    writes.write_text(out_dir / "sweep.md", "\n".join(lines) + "\n")
    return results

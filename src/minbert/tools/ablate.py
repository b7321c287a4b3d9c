"""`minbert ablate FILE`: a base config plus named variants (config deltas), each trained over several
seeds, tabulated as dev SST / Para / STS / overall (mean ± std over seeds), training time, seconds per optimizer
step and, where the runs logged them (train.combine.log_cosine_every), the mean task-gradient cosines.

The ablation file holds:
  title:    a heading for the table
  base:     a config file (relative to the ablation file or the working directory)
  set:      overrides for every run ({dotted.key: value})
  budget:   overrides applied only with `--budget` (subsampled data, fewer steps: a CPU-sized table)
  seeds:    list of seeds (train.seed); `--seeds N` keeps the first N
  variants: name -> {dotted.key: value, ...}; `extends: OTHER` starts from another variant's delta
            (the seed reports' tables are cumulative: "RSS + MP" is "RSS" plus mean pooling); a variant's
            own `budget: {...}` scales its own settings under `--budget` (e.g. a smaller random subset)
  report:   the figures of the report this table follows, shown beside minbert's:
            {source: "where its table is", split: dev | test | not labelled,
             rows: {VARIANT: {sst: .., para: .., sts: .., line: N, note: ".."}}} (a task it does not give left out)
Overrides apply in the order base, set, budget, variant, variant budget.
The table's Δ column compares each row's mean overall with its reference row's (the variant it extends, else
the first row) and says "in spread" when the difference is within the two rows' seed std summed.
Every run's config is validated before the first run starts. A finished run (its `ablation_result.json`
exists and records the same config) is not trained again, so an interrupted table continues where it
stopped; a run that never finished continues from its last checkpoint, and one whose config changed since is
trained again from the start (it is this ablation's own run folder: replaced without `--overwrite`; see
`run_once`). The output folder and each run
are locked while written (one `minbert ablate` per folder). With `--lanes N` the runs not done train N at a
time, each in a child process (`--lane VARIANT-SLUG/seed-N`, tools/lanes.py) while this one holds the folder's
lock and rewrites the table as each ends.
"""
from __future__ import annotations

import json
import os
import re
import statistics
import sys
from pathlib import Path

from .. import writes
from ..errors import ConfigError
from ..config import read_yaml
from ..schema import Config, load_config
from ..run_folder import RunFolder
from ..tasks import COURSE_TASKS, column_title, metric_columns
from .experiments import finished_result, resolve_base, train_or_continue
from .lanes import Job, Lanes

KEYS = {"title", "base", "set", "budget", "seeds", "variants", "report"}
NOT_CONFIG = ("extends", "budget")  # a variant's keys that are not config overrides


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
        # the parent's keys first, then the variant's own, in that order: a variant naming another schedule
        # (train.schedule.name) drops the parent's keys for the one it replaces (config.set_key)
        resolved[name] = {**{k: v for k, v in inherited.items() if k != "budget" and k not in own}, **own}
        if budget:
            resolved[name]["budget"] = budget
        return resolved[name]

    return {name: resolve(name, ()) for name in variants}


def report_figures(report: object, variants: dict, path: Path) -> tuple[dict, dict[str, dict]]:
    """The file's `report:` section, checked: ({source, split}, variant -> the report's figures for that row)."""
    if report is None:
        return {}, {}
    if not isinstance(report, dict) or set(report) - {"source", "split", "rows"}:
        raise ConfigError(f"{path}: report: expected {{source: text, split: text, rows: {{variant: figures}}}}, "
                          f"got {report!r}")
    entries = report.get("rows") or {}
    if not isinstance(entries, dict):
        raise ConfigError(f"{path}: report.rows: expected a mapping of variant names to figures")
    rows = {}
    for name, entry in entries.items():
        where = f"{path}: report.rows.{name}"
        if name not in variants:
            raise ConfigError(f"{where}: no variant named {name!r}")
        if not isinstance(entry, dict) or set(entry) - {*COURSE_TASKS, "line", "note"}:
            raise ConfigError(f"{where}: expected {{sst, para, sts: figures, line: N, note: text}}, got {entry!r}")
        for task in COURSE_TASKS:
            v = entry.get(task)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not -1 <= v <= 1):
                raise ConfigError(f"{where}.{task}: expected a figure in [-1, 1] (a fraction, not a percentage), got {v!r}")
        if not isinstance(entry.get("line"), int) or isinstance(entry.get("line"), bool):
            raise ConfigError(f"{where}.line: expected the report's line number, got {entry.get('line')!r}")
        rows[name] = entry
    return {k: v for k, v in report.items() if k != "rows"}, rows


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
        own = _assignments({k: v for k, v in delta.items() if k not in NOT_CONFIG}, name)
        if use_budget:
            own += _assignments(delta.get("budget", {}), f"{name}: budget")
        for seed in seeds:
            try:
                cfg = load_config(base, common + own + [f"train.seed={seed}"] + extra)
            except ConfigError as e:
                raise ConfigError(f"{path}: variant {name!r}: {e}") from None
            runs.append((name, seed, cfg))
    source, reports = report_figures(raw.get("report"), raw["variants"], path)
    written = {name: raw["variants"][name] or {} for name in deltas}  # each variant as the file writes it
    first = next(iter(raw["variants"]))  # the table's first row, also under --only
    return {"title": raw.get("title") or path.stem, "file": str(path), "budget": use_budget, "seeds": seeds,
            "deltas": deltas,
            "own": {n: {k: v for k, v in w.items() if k != "extends"} for n, w in written.items()},
            "references": {n: w.get("extends") or (None if n == first else first) for n, w in written.items()},
            "reports": {n: reports.get(n) for n in deltas}, "report": source}, runs


RESULT_FIELDS = {"variant": str, "seed": int, "metrics": dict, "seconds": (int, float), "config": dict}


def done_before(path: Path, wanted: dict, log) -> dict | None:
    """A run's ablation_result.json when it is whole (every metric a number) and records the config `wanted`."""
    result = finished_result(path, RESULT_FIELDS, wanted, log)
    if result is not None and not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                      for v in result["metrics"].values()):
        log(f"warning: {path}: a metric that is not a number; training that run again")
        return None
    return result


def summarise(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def ablate(path: Path, out_dir: Path, data_dir: str | None, extra: list[str], use_budget: bool = False,
           n_seeds: int | None = None, only: list[str] | None = None, log=None, lanes: int = 1,
           lane: str | None = None) -> dict:
    """Train the runs not done yet, `lanes` at a time; write and return the table. `lane` names the one run
    ("VARIANT-SLUG/seed-N") a child process of `lanes` trains (the parent has checked and locked DIR)."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))  # stdout: the JSON result only
    meta, runs = plan(path, use_budget, n_seeds, only, extra)
    if lane is not None:
        name, seed, cfg = next(r for r in runs if run_name(r[0], r[1]) == lane)
        return train_one(name, seed, cfg, out_dir, data_dir, log)
    from ..preflight import preflight
    for name, seed, cfg in runs:  # every run's device, backbone and data before anything is written
        preflight(cfg, data_dir)
    with RunFolder.lock(out_dir):
        return run_all(meta, runs, out_dir, data_dir, extra, log, lanes, child_args(path, data_dir, use_budget,
                                                                                    n_seeds, only, extra))


def run_name(variant: str, seed: int) -> str:
    """A run's folder under DIR, also its name as a lane."""
    return f"{slug(variant)}/seed-{seed}"


def child_args(path: Path, data_dir: str | None, use_budget: bool, n_seeds: int | None, only: list[str] | None,
               extra: list[str]) -> list[str]:
    """The `minbert ablate` arguments a lane's child process is given (besides --out and --lane): the parent's."""
    args = [str(path)] + ([] if data_dir is None else ["--data-dir", str(data_dir)]) + (["--budget"] if use_budget else [])
    args += [] if n_seeds is None else ["--seeds", str(n_seeds)]
    args += [] if not only else ["--only", *only]
    return args + [a for e in extra for a in ("--set", e)]


def train_one(name: str, seed: int, cfg: Config, out_dir: Path, data_dir: str | None, log) -> dict:
    """Train (or continue) one run and write its ablation_result.json; its result."""
    run_dir = out_dir / run_name(name, seed)
    changed = (run_dir / "ablation_result.json").exists()  # finished, with another config
    wanted = cfg.to_dict()  # as compared by done_before (train() may rewrite cfg)
    best, seconds = train_or_continue(cfg, run_dir, data_dir, log, "the same minbert ablate command",
                                      may_continue=not changed)
    result = {"variant": name, "seed": seed, "metrics": {k: v for k, v in best.items() if k != "epoch"},
              "epoch": best.get("epoch"), "seconds": seconds, "config": wanted}
    writes.write_text(run_dir / "ablation_result.json", json.dumps(result, indent=2) + "\n")
    return result


def run_all(meta: dict, runs: list[tuple[str, int, Config]], out_dir: Path, data_dir: str | None,
            extra: list[str], log, lanes: int = 1, args: list[str] | None = None) -> dict:
    finished: dict[tuple[str, int], dict] = {}  # (variant, seed) -> result, for every run done with its config
    for name, seed, cfg in runs:
        earlier = done_before(out_dir / run_name(name, seed) / "ablation_result.json", cfg.to_dict(), log)
        if earlier is not None:
            finished[name, seed] = earlier
    def table() -> dict:  # from every finished run, in the plan's order
        return write_tables(meta, [finished[n, s] for n, s, _ in runs if (n, s) in finished], out_dir, extra)

    for i, (name, seed, cfg) in enumerate(runs, 1):
        if (name, seed) in finished:
            log(f"ablate: [{i}/{len(runs)}] {name} seed {seed}: done before, {finished[name, seed]['seconds']} s")
        elif lanes == 1:
            changed = (out_dir / run_name(name, seed) / "ablation_result.json").exists()
            log(f"ablate: [{i}/{len(runs)}] {name} seed {seed} -> {out_dir / run_name(name, seed)}"
                + (" (its config changed since the earlier run)" if changed else ""))
            finished[name, seed] = train_one(name, seed, cfg, out_dir, data_dir, log)
            table()  # after every run: a stopped table still shows all that is done
    if lanes > 1:
        run_in_lanes([(n, s, c) for n, s, c in runs if (n, s) not in finished], out_dir, lanes, args or [], log,
                     finished, table)
    return table()


def run_in_lanes(todo: list[tuple[str, int, Config]], out_dir: Path, lanes: int, args: list[str], log,
                 finished: dict, table) -> None:
    """Each run not done in a child process (`minbert ablate ... --lane VARIANT/seed-N`), `lanes` at once; the
    table rewritten as each ends."""
    cores = os.cpu_count() or 1
    threads = max((c.train.threads or cores for _, _, c in todo), default=1)
    if threads * lanes > cores:
        log(f"ablate: note: {lanes} lanes of up to {threads} thread{'s' if threads > 1 else ''} each share this "
            f"machine's {cores} cores" + ("" if threads == 1 else f" (train.threads={max(1, cores // lanes)} fits them)"))
    command = [sys.executable, "-m", "minbert", "ablate", "--out", str(out_dir), *args]
    by_name = {run_name(n, s): (n, s) for n, s, _ in todo}
    jobs = []
    for name, seed, _ in todo:
        output = out_dir / f"{run_name(name, seed)}.log"
        output.parent.mkdir(parents=True, exist_ok=True)
        jobs.append(Job(run_name(name, seed), frozenset(), [*command, "--lane", run_name(name, seed)], output))

    def collect(job: str) -> None:
        name, seed = by_name[job]
        finished[name, seed] = json.loads((out_dir / job / "ablation_result.json").read_text())
        log(f"ablate: {name} seed {seed} done ({len(finished)} runs of the table)")
        table()

    Lanes(jobs, lanes, log).run(collect, "rerun the same minbert ablate command to continue (finished runs are "
                                         "kept; a paused one continues from its last checkpoint)")


def json_lines(path: Path) -> list[dict]:
    """The records of a JSON-lines log the run wrote; none when it is missing (a line cut short is left out)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return [r for r in records if isinstance(r, dict)]


def run_logs(run_dir: Path) -> dict:
    """What a finished run's own logs add to its scores: training seconds per optimizer step (metrics.jsonl: the
    epochs' train_seconds over the updates done, evaluation left out) and the mean of each pairwise
    task-gradient cosine it recorded (grad_cosine.jsonl, written with train.combine.log_cosine_every)."""
    logs: dict = {}
    epochs = json_lines(run_dir / "metrics.jsonl")
    if epochs and epochs[-1].get("updates"):
        logs["step_seconds"] = sum(e.get("train_seconds", 0.0) for e in epochs) / epochs[-1]["updates"]
    pairs: dict[str, list[float]] = {}
    for record in json_lines(run_dir / "grad_cosine.jsonl"):
        for pair, value in (record.get("cosine") or {}).items():
            pairs.setdefault(pair, []).append(value)
    if pairs:
        logs["cosines"] = {pair: statistics.fmean(values) for pair, values in pairs.items()}
    return logs


def write_tables(meta: dict, per_run: list[dict], out_dir: Path, extra: list[str]) -> dict:
    """ablation.json and ablation.md from the runs finished so far (rows in the file's order)."""
    rows = []
    for name in meta["deltas"]:
        mine = [r for r in per_run if r["variant"] == name]
        if not mine:
            continue
        metrics = {k: summarise([r["metrics"][k] for r in mine]) for k in mine[0]["metrics"] if all(k in r["metrics"] for r in mine)}
        logs = [run_logs(out_dir / run_name(name, r["seed"])) for r in mine]
        steps = [g["step_seconds"] for g in logs if "step_seconds" in g]
        pairs = {p: [g["cosines"][p] for g in logs if p in g.get("cosines", {})] for g in logs for p in g.get("cosines", {})}
        rows.append({"variant": name, "delta": meta["deltas"][name], "change": meta["own"][name], "seeds": [r["seed"] for r in mine],
                     "metrics": metrics, "seconds": summarise([r["seconds"] for r in mine]),
                     "step_seconds": summarise(steps) if steps else None,
                     "cosines": {p: statistics.fmean(v) for p, v in pairs.items()},
                     "reference": meta["references"][name], "report": meta["reports"][name]})
    runs_out = [{k: v for k, v in r.items() if k != "config"} for r in per_run]
    report = {**{k: meta[k] for k in ("title", "file", "budget", "seeds", "report")}, "out": str(out_dir),
              "extra": extra, "rows": rows, "runs": runs_out}
    writes.write_text(out_dir / "ablation.json", json.dumps(report, indent=2) + "\n")
    writes.write_text(out_dir / "ablation.md", render(report))
    return report


def difference(row: dict, ref: dict | None) -> str:
    """Mean overall minus the reference row's, "in spread" when within the two rows' seed std summed."""
    if ref is None or "overall" not in row["metrics"] or "overall" not in ref["metrics"]:
        return ""
    a, b = row["metrics"]["overall"], ref["metrics"]["overall"]
    delta = a["mean"] - b["mean"]
    seeds = min(len(row["seeds"]), len(ref["seeds"]))
    spread = ", in spread" if seeds > 1 and abs(delta) <= a["std"] + b["std"] else ""
    return f"{delta:+.3f} vs {ref['variant']}{spread}".replace("|", chr(92) + "|")


def report_cell(entry: dict | None, tasks: list[str]) -> str:
    if not entry:
        return "–"
    figures = " / ".join("–" if entry.get(t) is None else f"{entry[t]:.3f}" for t in tasks)
    return f"{figures} (l. {entry['line']}{'; ' + entry['note'] if entry.get('note') else ''})"


def step_cell(step: dict | None) -> str:
    return "" if step is None else f"{step['mean']:.3f}"


def render(report: dict) -> str:
    rows = report["rows"]
    by_name = {r["variant"]: r for r in rows}
    columns = metric_columns([r["metrics"] for r in rows])
    names = {c: column_title(c) for c in columns}
    order = {task: i for i, task in enumerate(columns)}  # the pairs in the tasks' order: sst/para, sst/sts, para/sts
    pairs = sorted({p for r in rows for p in r.get("cosines") or {}},
                   key=lambda p: tuple(order.get(t, len(order)) for t in p.split("/")) + (p,))
    command = f"minbert ablate {report['file']} --out {report['out']}" + (" --budget" if report["budget"] else "") \
        + "".join(f" --set {e}" for e in report["extra"])
    source = report.get("report") or {}
    cited = bool(source) or any(r.get("report") for r in rows)  # a report column only for a table that follows one
    lines = [f"# {report['title']}", "",
             f"Command: `{command}`; dev scores, mean ± std over seeds {report['seeds']}"
             f"{' (budget settings: a CPU-sized table, not full-data scores)' if report['budget'] else ''}. "
             "Δ: the row's mean overall minus its reference row's (the row it extends, else the first); "
             "\"in spread\" when that difference is within the two rows' std summed. "
             "train s: a run's training and evaluation seconds; s/step: its training seconds per optimizer step "
             "(means over seeds)"
             + ("; cos A/B: the mean cosine between tasks A's and B's encoder gradients over the steps the runs "
                "logged (train.combine.log_cosine_every)" if pairs else "") + "."
             + (" The report's own figures (SST / Quora / STS) are from "
                f"{source.get('source', 'the report')}{', ' + source['split'] if source.get('split') else ''}."
                if cited else ""), ""]
    header = ["variant", *(names[c] for c in columns), "Δ overall", "train s", "s/step", *(f"cos {p}" for p in pairs),
              *(["report"] if cited else []), "change (beyond the row extended)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = []
        for c in columns:
            m = r["metrics"].get(c)
            cells.append("" if m is None else f"{m['mean']:.3f}" + (f" ± {m['std']:.3f}" if len(r["seeds"]) > 1 else ""))
        own = r.get("change", r["delta"])  # what this row sets beyond the row it extends
        shown = {k: v for k, v in own.items() if k != "budget"}
        if report["budget"]:
            shown.update(own.get("budget", {}))
        delta = ", ".join(f"{k}={json.dumps(v)}" for k, v in shown.items()) or "(base)"
        ref = by_name.get(r.get("reference"))
        lines.append(f"| {r['variant'].replace('|', chr(92) + '|')} | " + " | ".join(cells)
                     + f" | {difference(r, ref)} | {r['seconds']['mean']:.0f} | {step_cell(r.get('step_seconds'))}"
                     + "".join(f" | {r['cosines'][p]:+.3f}" if p in (r.get("cosines") or {}) else " | " for p in pairs)
                     + (f" | {report_cell(r.get('report'), [c for c in columns if c != 'overall'])}" if cited else "")
                     + f" | `{delta}` |")
    return "\n".join(lines) + "\n"

"""`minbert sweep FILE` with a search space (search_space.py): an Optuna study (TPE, random or grid sampler;
median, successive-halving or Hyperband pruning from the dev score the trainer reports at each evaluation) kept
in a database, its trials trained as minbert runs in DIR/trial-NNNN, then a ranked table, figures and the best
trial's config.

The study lives in DIR/study.db (SQLite) unless `--storage URL` names another database (PostgreSQL for workers on
several machines); it is marked with the search it belongs to, so a study of another search is refused.
`--workers N` runs N worker processes here (each `train.threads` = cores / N), all drawing trials from the study.
A worker that dies (a kill, a lost machine) leaves its trial running in the study: on this machine a rerun
finds it by its process id, elsewhere Optuna's heartbeat does; it is marked failed and queued again with the same
values, and its rerun continues the dead one's run folder from its last checkpoint. A trial's result is kept in
its folder (trial_result.json) before the study is told, so a finished trial is never trained twice, and a new
trial never writes into a folder that holds a run.
"""
from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

from .. import writes
from ..errors import ConfigError, RunFolderError, TrainingError
from ..run_folder import RunFolder, holds_run
from ..training.interrupts import TrainingInterrupted
from .experiments import finished_result, train_or_continue
from .search_space import Param, Space, option_key, read_space

HEARTBEAT_SECONDS, GRACE_SECONDS = 30, 120  # a trial whose worker sent no heartbeat for GRACE is failed
MARK = "minbert_search"  # the study's user attribute that names its search
RESULT_FIELDS = {"score": (int, float), "seconds": (int, float), "updates": int, "pruned": bool, "config": dict}
STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def import_optuna():
    """Optuna, imported only by this command; missing, it is a one-line error saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("a search space needs Optuna, which is not installed: pip install 'minbert[search]'") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # minbert logs each trial itself
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def shown(url: str) -> str:
    """A storage URL without its password."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def default_storage(out_dir: Path) -> str:
    return f"sqlite:///{(out_dir / 'study.db').resolve()}"


def open_storage(optuna, url: str):
    """The study database at `url` (any that Optuna's RDBStorage takes), with heartbeats; one that cannot be opened
    is a one-line ConfigError."""
    import inspect

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    stale = ("heartbeat_stale_trial_callback"  # Optuna 4.9's name for failed_trial_callback
             if "heartbeat_stale_trial_callback" in inspect.signature(optuna.storages.RDBStorage).parameters
             else "failed_trial_callback")
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS,
                                              grace_period=GRACE_SECONDS, **{stale: requeue})
        except Exception as e:  # SQLAlchemy's and the drivers' errors: a bad URL, no server, no database, a password
            if attempt < 4 and (type(e).__name__ == "IntegrityError" or "already exists" in str(e)):
                time.sleep(1 + attempt)  # another worker is creating the study tables in a new database right now
                continue
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"--storage {shown(url)}: cannot open it ({type(e).__name__}: {why[:300]})") from None


def make_sampler(optuna, space: Space, seed: int | None = None):
    seed = space.seed if seed is None else seed
    if space.sampler == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if space.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=space.startup_trials)


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for the trial numbered `number` of a search seeded `seed`: every process that shares the
    study (workers here, or on other machines) draws each trial from its own stream, so two workers never draw the
    same values, and one worker's search repeats trial for trial under the same seed."""
    return (seed * 1_000_003 + number) % 2**32


def make_pruner(optuna, space: Space):
    if space.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=space.startup_trials, n_warmup_steps=space.warmup_steps)
    if space.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if space.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def open_study(optuna, space: Space, storage, name: str, url: str):
    """The study `name`, created when missing; one made for another search is refused before anything is written."""
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(optuna, space),
                                  pruner=make_pruner(optuna, space))
    except KeyError:  # no such study yet
        study = None
    if study is not None:
        mark = study.user_attrs.get(MARK)
        if not isinstance(mark, dict) or mark.get("search") != space.fingerprint():
            raise ConfigError(f"study {name!r} in {shown(url)} belongs to another search"
                              + (f" ({mark.get('file')})" if isinstance(mark, dict) else " (not one of minbert's)")
                              + "; give another --study name or --out folder")
        return study
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                sampler=make_sampler(optuna, space), pruner=make_pruner(optuna, space))
    mark = study.user_attrs.get(MARK)
    if mark is not None and (not isinstance(mark, dict) or mark.get("search") != space.fingerprint()):
        raise ConfigError(f"study {name!r} in {shown(url)} belongs to another search; give another --study name")
    if mark is None:
        study.set_user_attr(MARK, {"file": str(space.path), "search": space.fingerprint()})
    return study


def root_of(trial) -> int:
    """The trial whose run folder a trial uses: itself, or the first of the trials it re-runs."""
    return int(trial.user_attrs.get("retry_of", trial.number))


def run_name(number: int) -> str:
    return f"trial-{number:04d}"


def requeue(study, trial) -> None:
    """Queue a killed or interrupted trial again with the same values (Optuna's failed-trial callback too)."""
    if trial.user_attrs.get("error") or "values" not in trial.user_attrs:
        return
    study.enqueue_trial(trial.params, user_attrs={"retry_of": root_of(trial), "values": trial.user_attrs["values"]})
    log(f"search: trial {trial.number} did not finish; queued again (it continues {run_name(root_of(trial))})")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_dead_trials(optuna, study, storage) -> None:
    """Trials left running by a worker of this machine that is gone: failed, and queued again."""
    here = socket.gethostname()
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if host != here or not pid.isdigit() or alive(int(pid)):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        except RuntimeError:  # another process finished it first
            continue
        requeue(study, storage.get_trial(trial_id))


def counted(optuna, study) -> tuple[int, int]:
    """(trials that count towards the budget: complete, pruned, failed with an error; trials running now)."""
    done = running = 0
    for t in study.get_trials(deepcopy=False):
        name = t.state.name
        done += name in ("COMPLETE", "PRUNED") or (name == "FAIL" and bool(t.user_attrs.get("error")))
        running += name == "RUNNING"
    return done, running


def suggest(trial, params: tuple[Param, ...]) -> dict[str, Any]:
    """A trial's values: each range and choice drawn (a choice's section only when it is chosen)."""
    values: dict[str, Any] = {}
    for p in params:
        if p.kind == "fixed":
            values[p.key] = p.value
            continue
        if p.kind == "int":
            value = trial.suggest_int(p.key, p.low, p.high, step=p.step or 1, log=p.log)
        elif p.kind == "float":
            value = trial.suggest_float(p.key, p.low, p.high, step=p.step, log=p.log)
        elif all(o is None or isinstance(o, (bool, int, float, str)) for o in p.options):
            value = trial.suggest_categorical(p.key, list(p.options))
        else:  # lists or mappings: chosen by their JSON text
            value = json.loads(trial.suggest_categorical(p.key, [option_key(o) for o in p.options]))
        values[p.key] = value
        values.update(suggest(trial, p.sections.get(option_key(value), ())))
    return values


class Search:
    """One process's part of a search: it draws trials from the study and trains each."""

    def __init__(self, optuna, space: Space, study, storage, out_dir: Path, data_dir: str | None, extra: list[str]):
        self.optuna, self.space, self.study, self.storage = optuna, space, study, storage
        self.out_dir, self.data_dir, self.extra = out_dir, data_dir, extra

    def objective(self, trial) -> float:
        optuna = self.optuna
        if self.space.sampler != "grid":  # the grid sampler picks a point not yet taken by any worker
            self.study.sampler = make_sampler(optuna, self.space, trial_seed(self.space.seed, trial.number))
        values = suggest(trial, self.space.params)  # a re-run trial gets its queued values back
        root = root_of(trial)
        run_dir = self.out_dir / run_name(root)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("values", values)
        trial.set_user_attr("run", str(run_dir))
        cfg = self.space.config(values, self.extra)
        wanted = cfg.to_dict()
        with RunFolder.lock(run_dir):
            done = run_dir / "trial_result.json"
            result = finished_result(done, RESULT_FIELDS, wanted, log)
            if result is None:
                if root == trial.number and holds_run(run_dir):
                    raise RunFolderError(f"{run_dir} holds a run that study {self.study.study_name!r} did not start; "
                                         "search into another --out folder (no run is overwritten)")
                log(f"search: trial {trial.number} ({run_dir.name}): "
                    + ", ".join(f"{k}={v}" for k, v in values.items()))
                result = self.train(trial, cfg, run_dir, done, wanted)
            else:
                log(f"search: trial {trial.number}: {run_dir.name} finished before; its result is kept")
        for key in ("score", "seconds", "updates"):
            trial.set_user_attr(key, result[key])
        if result["pruned"]:
            log(f"search: trial {trial.number} pruned at optimizer step {result['updates']} "
                f"(best dev {result['score']:.4f})")
            raise optuna.TrialPruned(f"pruned at step {result['updates']}")
        log(f"search: trial {trial.number} done: dev {result['score']:.4f} in {result['seconds']} s")
        return result["score"]

    def train(self, trial, cfg, run_dir: Path, done: Path, wanted: dict) -> dict:
        seen = {"step": 0, "pruned": False}

        def on_eval(step: int, score: float) -> bool:
            seen["step"] = max(seen["step"], step)
            trial.report(score, step)
            seen["pruned"] = bool(trial.should_prune())
            return seen["pruned"]

        try:
            best, seconds = train_or_continue(cfg, run_dir, self.data_dir, log, "the same minbert sweep command",
                                              may_continue=not done.exists(), on_eval=on_eval)
        except TrainingInterrupted:
            requeue(self.study, trial)  # this trial fails; its values run again, continuing this folder
            raise
        except TrainingError as e:
            trial.set_user_attr("error", str(e)[:500])
            log(f"search: trial {trial.number} failed: {e}")
            raise
        from ..evaluate import selection_score
        result = {"score": selection_score(best, cfg.tasks), "seconds": seconds, "updates": seen["step"],
                  "pruned": seen["pruned"], "metrics": best, "config": wanted}
        writes.write_text(done, json.dumps(result, indent=2) + "\n")
        return result

    def stop_when_enough(self, study, trial) -> None:
        done, running = counted(self.optuna, study)
        if done + running >= self.space.trials:
            study.stop()

    def run(self) -> None:
        recover_dead_trials(self.optuna, self.study, self.storage)
        done, running = counted(self.optuna, self.study)
        if done + running >= self.space.trials:
            return
        self.study.optimize(self.objective, catch=(TrainingError,), callbacks=[self.stop_when_enough],
                            gc_after_trial=True)


def search(path: Path, out_dir: Path, data_dir: str | None, extra: list[str], storage_url: str | None,
           study_name: str | None, workers: int, trials: int | None, worker: bool = False,
           seed: int | None = None) -> dict:
    """Run the search in `path` into `out_dir`; returns the summary written to search.json (a worker: {})."""
    optuna = import_optuna()
    space = read_space(path, extra)  # every key and value checked before anything is written
    if trials is not None:
        space.trials = trials
    if seed is not None:
        if seed < 0:
            raise ConfigError(f"--seed {seed}: expected a whole number of at least 0")
        space.seed = seed
    if not worker:
        from ..preflight import preflight
        preflight(space.config(first_values(space), extra), data_dir)  # device, backbone, data
    url = storage_url or default_storage(out_dir)
    name = study_name or path.stem
    if storage_url is None:
        writes.mkdir(out_dir)
    storage = open_storage(optuna, url)
    study = open_study(optuna, space, storage, name, url)
    writes.mkdir(out_dir)
    if worker or workers == 1:
        Search(optuna, space, study, storage, out_dir, data_dir, extra).run()
    else:
        recover_dead_trials(optuna, study, storage)
        run_workers(path, out_dir, data_dir, extra, url, name, workers, space)
    if worker:
        return {}
    return write_outputs(optuna, study, space, out_dir, url)


def first_values(space: Space) -> dict[str, Any]:
    from .search_space import assignments
    return assignments(space.params)[0]


def run_workers(path: Path, out_dir: Path, data_dir: str | None, extra: list[str], url: str, name: str,
                workers: int, space: Space) -> None:
    """`workers` processes of `minbert sweep --worker` side by side, each with its share of the CPU threads."""
    from .lanes import Job, Lanes

    threads = [] if any(s.startswith("train.threads=") for s in extra) else [
        "--set", f"train.threads={max(1, (os.cpu_count() or 1) // workers)}"]
    base = [sys.executable, "-m", "minbert", "sweep", str(path), "--out", str(out_dir), "--storage", url,
            "--study", name, "--trials", str(space.trials), "--seed", str(space.seed), "--worker"]
    base += [a for s in extra for a in ("--set", s)] + threads + (["--data-dir", data_dir] if data_dir else [])
    jobs = [Job(f"worker-{i}", frozenset(), base, out_dir / f"worker-{i}.log") for i in range(1, workers + 1)]
    Lanes(jobs, workers, log).run(lambda job: None, "rerun the same minbert sweep command to continue the search")


def trial_rows(study) -> list[dict]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name == "WAITING":
            continue
        intermediate = t.intermediate_values
        score = t.value if t.state.name == "COMPLETE" else t.user_attrs.get("score")
        if score is None and intermediate:
            score = max(intermediate.values())
        note = t.user_attrs.get("error") or ("stopped before its end; queued again"
                                              if t.state.name == "FAIL" else "")
        rows.append({"trial": t.number, "run": run_name(root_of(t)), "state": STATES.get(t.state.name, t.state.name),
                     "score": score, "params": t.params, "updates": t.user_attrs.get("updates"),
                     "seconds": t.user_attrs.get("seconds"), "evaluations": len(intermediate), "note": note})
    order = {"complete": 0, "pruned": 1, "running": 2, "failed": 3}
    rows.sort(key=lambda r: (order.get(r["state"], 4), -(r["score"] if r["score"] is not None else -1e9), r["trial"]))
    return rows


def write_outputs(optuna, study, space: Space, out_dir: Path, url: str) -> dict:
    """search.json, search.md, figures/*.png and best.yaml, written under the folder's lock (a worker elsewhere may
    write them too)."""
    rows = trial_rows(study)
    complete = [r for r in rows if r["state"] == "complete"]
    summary = {"file": str(space.path), "study": study.study_name, "storage": shown(url), "sampler": space.sampler,
               "pruner": space.pruner, "seed": space.seed, "budget": space.trials,
               "compute": {"seconds": sum(r["seconds"] or 0 for r in rows), "updates": sum(r["updates"] or 0 for r in rows)},
               "counts": {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "failed", "running")},
               "best": complete[0] if complete else None, "trials": rows}
    for attempt in range(60):
        try:
            with RunFolder.lock(out_dir):
                figures = draw_figures(optuna, study, out_dir)
                if complete:
                    write_best_config(space, study, out_dir)
                writes.write_text(out_dir / "search.json", json.dumps(summary, indent=2) + "\n")
                writes.write_text(out_dir / "search.md", table(summary, figures, bool(complete)))
            return summary
        except RunFolderError:
            time.sleep(0.5)  # another worker writes them now
    raise RunFolderError(f"{out_dir} stayed locked by another process; its search outputs were not rewritten")


def write_best_config(space: Space, study, out_dir: Path) -> None:
    best = study.best_trial
    cfg = space.config(best.user_attrs["values"])
    header = (f"# The best trial of the search {space.path} (study {study.study_name}, trial {best.number}, "
              f"dev {best.value:.4f}).\n# Train it: minbert train --config {out_dir / 'best.yaml'}\n")
    writes.write_text(out_dir / "best.yaml", header + yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def draw_figures(optuna, study, out_dir: Path) -> dict[str, str]:
    """Optuna's matplotlib figures as PNG; a figure the trials cannot make yet (too few) is left out, with why."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    made: dict[str, str] = {}
    for name, draw in (("history", plots.plot_optimization_history), ("importances", plots.plot_param_importances),
                       ("slice", plots.plot_slice), ("parallel", plots.plot_parallel_coordinate),
                       ("intermediate", plots.plot_intermediate_values)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = draw(study)
            figure = getattr(axes, "figure", None) or axes.flat[0].figure
        except Exception as e:  # too few trials, one parameter, no reports: Optuna says why
            made[name] = f"not drawn ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})"
            continue
        writes.mkdir(out_dir / "figures")
        writes.save_figure(figure, out_dir / "figures" / f"{name}.png", bbox_inches="tight")
        plt.close(figure)
        made[name] = f"figures/{name}.png"
    return made


def table(summary: dict, figures: dict[str, str], has_best: bool) -> str:
    keys = sorted({k for r in summary["trials"] for k in r["params"]})
    c = summary["counts"]
    lines = [f"# Search {summary['file']}", "",
             f"Study `{summary['study']}` in `{summary['storage']}`: sampler {summary['sampler']} (seed "
             f"{summary['seed']}), pruner {summary['pruner']}, budget {summary['budget']} trials; "
             f"{c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed, {c['running']} running. "
             f"Compute: {summary['compute']['seconds']} s, {summary['compute']['updates']} optimizer steps. "
             "Ranked by dev score (a pruned trial: its best evaluation).", "",
             "| rank | trial | state | dev score | " + " | ".join(keys) + " | optimizer steps | seconds | run | note |",
             "|---|---|---|---|" + "---|" * len(keys) + "---|---|---|---|"]
    for i, r in enumerate(summary["trials"], 1):
        cells = " | ".join(fmt(r["params"].get(k)) for k in keys)
        lines.append(f"| {i} | {r['trial']} | {r['state']} | {fmt(r['score'])} | {cells} | {fmt(r['updates'])} | "
                     f"{fmt(r['seconds'])} | {r['run']} | {r['note']} |")
    lines += ["", "## Figures", ""]
    lines += [f"- {name}: " + (f"![{name}]({where})" if where.endswith(".png") else where) for name, where in figures.items()]
    if has_best:
        lines += ["", "The best trial's config: `best.yaml` (`minbert train --config best.yaml`)."]
    return "\n".join(lines) + "\n"


def fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-2 and value else f"{value:.4f}"
    return str(value)

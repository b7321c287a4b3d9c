"""`minbert ensemble RUN_DIR... --out DIR`: average the tasks' probabilities (SST classes, paraphrase) and
scores (STS) of several finished runs, then write the same evaluation and prediction files as a run.

The runs may differ in anything (heads, pair encoding, backbone) but must share their tasks; each run
is loaded, predicts dev and test, and is released before the next one is loaded. The runs are only read;
the output folder is locked while it is written, and a folder that holds a training run is refused.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .. import writes
from ..errors import ConfigError
from ..data.loading import resolve_data_dir
from ..evaluate import prediction_path, write_predictions
from ..run_folder import RunFolder
from ..runs import check_run, load_run, run_outputs
from ..tasks import overall_score


def ensemble(run_dirs: list[Path], out_dir: Path, data_dir: str | None = None, log=None) -> dict[str, float]:
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))  # stdout: the JSON result only
    if len(run_dirs) < 2:
        raise ConfigError("ensemble: name at least two run directories")
    for run_dir in run_dirs:  # every member readable before the output folder is created
        check_run(run_dir)
    with RunFolder.output(out_dir, "ensemble"):  # one writer; never into a training run's folder
        with writes.staged(out_dir) as stage:  # all the files, or on a failure none (the earlier ones as they were)
            return _ensemble(run_dirs, stage, data_dir, log)


def _ensemble(run_dirs: list[Path], out_dir: Path, data_dir: str | None, log) -> dict[str, float]:
    summed: dict[tuple[str, str], np.ndarray] = {}
    rows: dict[tuple[str, str], object] = {}
    tasks: list[str] | None = None
    weights = None
    for run_dir in run_dirs:
        cfg, model, tokenizer = load_run(run_dir)
        if tasks is None:
            tasks, table, weights = list(model.tasks), dict(model.tasks), cfg.eval.weights
        elif set(model.tasks) != set(tasks):
            raise ConfigError(f"{run_dir}: trained on {list(model.tasks)}, the first run on {tasks}; "
                              "an ensemble needs the same tasks")
        for name, task in model.tasks.items():
            problem = table[name].output_problem(task)
            if problem:
                raise ConfigError(f"{run_dir}: task {name} is not the first run's ({problem}); an ensemble averages "
                                  "outputs that mean the same")
        data_path = resolve_data_dir(data_dir, cfg.data.dir)
        for split in ("dev", "test"):
            for name, o in run_outputs(cfg, model, tokenizer, data_path, split).items():
                key = (split, name)
                if key in rows and rows[key].ids != o.ids:
                    raise ConfigError(f"{run_dir}: its {split} rows of {name} differ from the first run's "
                                      "(a different data.dev_limit or data directory?)")
                rows.setdefault(key, o)
                summed[key] = summed.get(key, 0) + o.probs
        log(f"ensemble: {run_dir} predicted dev and test")
        del model
    metrics: dict[str, float] = {}
    for (split, name), total in summed.items():
        task, o = table[name], rows[(split, name)]
        preds = task.kind.from_probabilities(total / len(run_dirs))
        write_predictions(task, o.ids, preds, prediction_path(out_dir, task, split))
        if split == "dev" and o.labels is not None:
            metrics.update(task.scores(preds, o.labels))
    overall = overall_score(metrics, tasks, weights)
    if overall is not None:
        metrics["overall"] = overall
    writes.write_text(out_dir / "ensemble_metrics.json", json.dumps(
        {"members": [str(r) for r in run_dirs], "dev": metrics}, indent=2) + "\n")
    return metrics

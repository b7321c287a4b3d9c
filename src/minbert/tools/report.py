"""`minbert report RUN_DIR`: REPORT.md with PNG figures for a finished run, from its dev predictions.

Figures, for each task by its kind: a confusion matrix for a classifier (with precision / recall / F1 for a
binary one), a predicted-vs-gold scatter with its least-squares line and a residual plot for a score;
training curves (each task's training loss against the optimizer step, from steps.jsonl, with the dev
loss and dev metric at each epoch's end from metrics.jsonl, and the learning rates; a run without
steps.jsonl gets per-epoch curves from metrics.jsonl alone); the pairwise cosine between task gradients
over training (when grad_cosine.jsonl was recorded). Tables: dev metrics, and the most confident wrong
predictions of each task with their sentences.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .. import writes  # noqa: E402
from ..errors import CheckpointError
from ..data.loading import resolve_data_dir  # noqa: E402
from ..run_folder import RunFolder  # noqa: E402
from ..runs import TaskOutputs, load_run, run_outputs  # noqa: E402
from ..tasks import COURSE_TRIO, Task, overall_score  # noqa: E402


def read_records(path: Path, keys: dict[str, type]) -> list[dict]:
    """A run's JSON-lines log (none: []), read back as untrusted: each line an object with `keys` of those
    types, every mapping among them of numbers; anything else is a `CheckpointError` naming file and line."""
    if not path.is_file():
        return []
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable ({' '.join(str(e).split())[:200]})") from None
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except (ValueError, RecursionError):
            raise CheckpointError(f"{path}:{n}: not a JSON record") from None
        bad = not isinstance(r, dict) or any(not isinstance(r.get(k), t) or isinstance(r.get(k), bool)
                                             for k, t in keys.items())
        if not bad:
            bad = any(not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r[k].values())
                      for k, t in keys.items() if t is dict)
        if bad:
            raise CheckpointError(f"{path}:{n}: expected an object with {', '.join(keys)} "
                                  "(mappings of numbers), as minbert writes it")
        records.append(r)
    return records


def confusion(gold: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (gold.astype(int), pred.astype(int)), 1)
    return m


def precision_recall_f1(gold: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    tp = float(np.sum((pred == 1) & (gold == 1)))
    precision = tp / max(1.0, float(np.sum(pred == 1)))
    recall = tp / max(1.0, float(np.sum(gold == 1)))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": float(np.mean(pred == gold))}


def plot_confusion(m: np.ndarray, labels: list[str], title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.5 + 0.4 * len(labels), 4 + 0.3 * len(labels)))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    fig.tight_layout()
    writes.save_figure(fig, path, dpi=110)
    plt.close(fig)


def plot_scores(task: Task, gold: np.ndarray, pred: np.ndarray, folder: Path) -> dict[str, float]:
    slope, intercept = np.polyfit(gold, pred, 1)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(gold, pred, s=6, alpha=0.4)
    xs = np.linspace(task.kind.min_score, task.kind.max_score, 50)
    ax.plot(xs, slope * xs + intercept, color="C3", label=f"fit: {slope:.2f} x + {intercept:.2f}")
    ax.plot(xs, xs, color="gray", linestyle=":", label="prediction = gold")
    ax.set_xlabel(f"gold {task.label_column}")
    ax.set_ylabel(f"predicted {task.label_column}")
    ax.set_title(f"{task.title} dev: predicted vs gold")
    ax.legend()
    fig.tight_layout()
    writes.save_figure(fig, folder / f"{task.name}_scatter.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.scatter(gold, pred - gold, s=6, alpha=0.4)
    ax.axhline(0, color="gray", linestyle=":")
    ax.set_xlabel(f"gold {task.label_column}")
    ax.set_ylabel("prediction - gold")
    ax.set_title(f"{task.title} dev residuals")
    fig.tight_layout()
    writes.save_figure(fig, folder / f"{task.name}_residuals.png", dpi=110)
    plt.close(fig)
    return {"slope": float(slope), "intercept": float(intercept), "mae": float(np.mean(np.abs(pred - gold)))}


def plot_curves(history: list[dict], folder: Path) -> bool:
    tasks = list(dict.fromkeys(t for h in history for t in (*h.get("train_loss", {}), *h.get("dev", {}))
                               if t != "overall" and "." not in t))  # a task not trained in some epoch is still plotted
    if not tasks:
        return False
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.5), squeeze=False)
    epochs = [h["epoch"] for h in history]
    for ax, t in zip(axes[0], tasks):
        ax.plot(epochs, [h.get("train_loss", {}).get(t) for h in history], marker="o", label="train loss")
        if all(t in h.get("dev_loss", {}) for h in history):
            ax.plot(epochs, [h["dev_loss"][t] for h in history], marker="o", label="dev loss")
        ax2 = ax.twinx()
        ax2.plot(epochs, [h["dev"].get(t) for h in history], marker="s", color="C2", label="dev metric")
        label_task_panel(ax, ax2, t, "epoch")
    fig.tight_layout()
    writes.save_figure(fig, folder / "curves.png", dpi=110)
    plt.close(fig)
    return True


def label_task_panel(ax, ax2, task: str, xlabel: str) -> None:
    """A task's curves panel: loss on the left axis, dev metric on the right, one legend for both."""
    ax.set_title(task)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    ax2.set_ylabel("dev metric")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [line.get_label() for line in lines], fontsize=8)


def epoch_end_updates(history: list[dict], steps: list[dict]) -> list[int | None]:
    """The optimizer step at which each epoch ended: recorded in metrics.jsonl, else (older runs) the last
    logged step of that epoch, else unknown."""
    out = []
    for h in history:
        logged = [s["update"] for s in steps if s["epoch"] == h["epoch"]]
        out.append(h.get("updates", max(logged) if logged else None))
    return out


def step_curves_figure(steps: list[dict], history: list[dict]):
    """One panel per task (training loss of each steps.jsonl line against its optimizer step; dev loss
    and dev metric at each epoch's end) and one of the learning rates."""
    tasks = list(dict.fromkeys(t for s in steps for t in s["loss"]))
    fig, axes = plt.subplots(1, len(tasks) + 1, figsize=(4 * (len(tasks) + 1), 3.5), squeeze=False)
    ends = [(x, h) for x, h in zip(epoch_end_updates(history, steps), history) if x is not None]
    for ax, t in zip(axes[0], tasks):
        logged = [s for s in steps if t in s["loss"]]
        ax.plot([s["update"] for s in logged], [s["loss"][t] for s in logged], lw=1, label="train loss")
        dev_loss = [(x, h["dev_loss"][t]) for x, h in ends if t in h.get("dev_loss", {})]
        if dev_loss:
            ax.plot(*zip(*dev_loss), marker="o", ls="--", label="dev loss")
        ax2 = ax.twinx()
        dev = [(x, h["dev"][t]) for x, h in ends if t in h.get("dev", {})]
        if dev:
            ax2.plot(*zip(*dev), marker="s", color="C2", label="dev metric")
        label_task_panel(ax, ax2, t, "optimizer step")
    ax = axes[0][-1]
    for group in dict.fromkeys(g for s in steps for g in s["lr"]):
        ax.plot([s["update"] for s in steps], [s["lr"].get(group) for s in steps], lw=1, label=group)
    ax.set_title("learning rate")
    ax.set_xlabel("optimizer step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_step_curves(steps: list[dict], history: list[dict], folder: Path) -> bool:
    if not steps:
        return False
    fig = step_curves_figure(steps, history)
    writes.save_figure(fig, folder / "curves.png", dpi=110)
    plt.close(fig)
    return True


def plot_cosines(records: list[dict], folder: Path) -> bool:
    if not records:
        return False
    pairs = list(records[0]["cosine"])
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for pair in pairs:
        ax.plot([r["update"] for r in records], [r["cosine"][pair] for r in records], label=pair, lw=1)
    ax.axhline(0, color="gray", linestyle=":")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cosine between task gradients")
    ax.legend(fontsize=8)
    fig.tight_layout()
    writes.save_figure(fig, folder / "grad_cosine.png", dpi=110)
    plt.close(fig)
    return True


def worst_errors(task: Task, o: TaskOutputs, k: int) -> list[str]:
    """The k most confident wrong predictions (a score: the largest errors), as markdown table rows."""
    if not task.class_names:
        wrongness = np.abs(o.preds - o.labels)
        order = np.argsort(-wrongness)[:k]
        confidence = lambda i: f"error {wrongness[i]:.2f}"  # noqa: E731
    else:
        wrong = np.flatnonzero(o.preds != o.labels)
        conf = o.probs.max(-1) if o.probs.ndim == 2 else np.abs(o.probs - 0.5) + 0.5
        order = wrong[np.argsort(-conf[wrong])][:k]
        confidence = lambda i: f"p = {conf[i]:.2f}"  # noqa: E731
    rows = []
    for i in order:
        text = " ‖ ".join(t.replace("|", "\\|") for t in o.texts[i])
        gold, pred = task.format_value(o.labels[i]), task.format_value(o.preds[i])
        rows.append(f"| {o.ids[i]} | {text} | {gold} | {pred} | {confidence(i)} |")
    return rows


def task_section(task: Task, o: TaskOutputs, folder: Path) -> list[str]:
    """A task's figures and tables: a confusion matrix for a classifier (precision / recall / F1 when it has
    two classes), a scatter and residuals for a score."""
    lines = ["", f"## {task.title}", ""]
    if not task.class_names:
        fit = plot_scores(task, o.labels, o.preds, folder)
        return lines + [f"Least-squares fit of prediction on gold: {fit['slope']:.3f} × gold + {fit['intercept']:.3f}; "
                        f"mean absolute error {fit['mae']:.3f}.", "", f"![{task.name} scatter]({task.name}_scatter.png)",
                        "", f"![{task.name} residuals]({task.name}_residuals.png)"]
    n = len(task.class_names)
    plot_confusion(confusion(o.labels, o.preds, n), list(task.class_names), f"{task.title} dev confusion",
                   folder / f"confusion_{task.name}.png")
    lines.append(f"![{task.name} confusion](confusion_{task.name}.png)")
    if n == 2:
        prf = precision_recall_f1(o.labels, o.preds)
        lines += ["", "| precision | recall | F1 | accuracy |", "|---|---|---|---|",
                  f"| {prf['precision']:.4f} | {prf['recall']:.4f} | {prf['f1']:.4f} | {prf['accuracy']:.4f} |"]
    return lines


def report(run_dir: Path, data_dir: str | None = None, top_k: int = 5) -> Path:
    loaded = load_run(run_dir)  # a run to read, before anything is written
    with RunFolder.lock(run_dir):  # one writer: RUN_DIR/report is rewritten
        return write_report(run_dir, loaded, data_dir, top_k)


def write_report(run_dir: Path, loaded: tuple, data_dir: str | None, top_k: int) -> Path:
    cfg, model, tokenizer = loaded
    outputs = run_outputs(cfg, model, tokenizer, resolve_data_dir(data_dir, cfg.data.dir), "dev")
    folder = run_dir / "report"
    writes.mkdir(folder)
    scores = {n: model.tasks[n].scores(o.preds, o.labels) for n, o in outputs.items()}
    metrics = {k: float(v) for each in scores.values() for k, v in each.items()}
    overall = overall_score(metrics, list(model.tasks), cfg.eval.weights)
    lines = [f"# Report: {run_dir}", "", "Dev split" + (f" (a fixed random {cfg.data.dev_limit} rows per task: data.dev_limit)" if cfg.data.dev_limit else "")
             + f"; backbone {cfg.model.backbone or 'all-MiniLM-L6-v2'}; tasks {', '.join(cfg.tasks)}.", "",
             "| task | metric | dev |", "|---|---|---|"]
    lines += [f"| {n} | {metric} | {v:.4f} |" for n, each in scores.items()
              for metric, v in zip(model.tasks[n].metric_names, each.values())]
    if overall is not None:
        course = cfg.eval.weights is None and sorted(model.tasks) == sorted(COURSE_TRIO)
        how = "(sst + para + (sts + 1) / 2) / 3" if course else "weighted mean" if cfg.eval.weights else "mean"
        lines.append(f"| overall | {how} | {overall:.4f} |")
    for name, o in outputs.items():
        lines += task_section(model.tasks[name], o, folder)
    history = read_records(run_dir / "metrics.jsonl", {"epoch": int, "train_loss": dict, "dev": dict})
    steps = read_records(run_dir / "steps.jsonl", {"update": int, "loss": dict, "lr": dict})
    if plot_step_curves(steps, history, folder):
        lines += ["", "## Training curves", "", f"Training loss of each task against the optimizer step ({len(steps)} "
                  f"lines of steps.jsonl, one every {cfg.train.log_every} steps, each the mean since the line before), "
                  "the dev loss and dev metric at each epoch's end (metrics.jsonl), and the learning rates.", "",
                  "![curves](curves.png)"]
    elif plot_curves(history, folder):
        lines += ["", "## Training curves", "", "This run has no steps.jsonl (trained before the step log, with "
                  "train.log_every off, or shorter than train.log_every steps): mean training loss of each epoch "
                  "against the dev loss and dev metric after it, from metrics.jsonl.", "", "![curves](curves.png)"]
    cos_file = run_dir / "grad_cosine.jsonl"
    records = read_records(cos_file, {"update": int, "cosine": dict})
    if records and any(set(r["cosine"]) != set(records[0]["cosine"]) for r in records):
        raise CheckpointError(f"{cos_file}: the records name different task pairs")
    if plot_cosines(records, folder):
        lines += ["", "## Task-gradient conflict", "", "Cosine between the tasks' gradients on the encoder "
                  "(below 0: the tasks pull the shared weights apart).", "", "![gradient cosines](grad_cosine.png)"]
    lines += ["", "## Most confident errors", ""]
    for n, o in outputs.items():
        lines += [f"### {n}", "", "| id | text | gold | predicted | confidence |", "|---|---|---|---|---|"]
        lines += worst_errors(model.tasks[n], o, top_k) + [""]
    writes.write_text(folder / "REPORT.md", "\n".join(lines) + "\n")
    return folder / "REPORT.md"

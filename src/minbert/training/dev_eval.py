"""A run's dev evaluation (at each epoch's end, and every `train.eval_every` optimizer steps): the score, best/
when it improved, the epoch's line of metrics.jsonl, and the trainer's `on_eval` hook (a search's pruner)."""
from __future__ import annotations

import time
from ..evaluate import evaluate, format_metrics, selection_score
from .state import atomic_folder

def evaluate_dev(self, mid_epoch: bool = False) -> bool:
    """`self` is the Trainer. Score dev, keep best/ when it improved, tell `on_eval`; at an epoch's end also record the
    epoch (history). Returns whether best/ improved."""
    t0 = time.time()
    dev_loss: dict[str, float] = {}
    with self.average.applied():
        metrics, _ = evaluate(self.model, self.dev_sets, self.tokenizer, self.cfg.eval.batch_size, self.device,
                              dev_loss, self.cfg.eval.weights)
    score = selection_score(metrics, self.cfg.tasks)
    improved = score > self.progress.best_score
    if mid_epoch:
        self.log(f"epoch {self.progress.epoch}, optimizer step {self.progress.updates}: dev {format_metrics(metrics)}"
                 + ("; new best, saved" if improved else ""))
    else:
        record = self.progress.epoch_record(self.cfg.tasks, metrics, dev_loss, time.time() - t0)
        self.progress.history.append(record)
        if self.par.main:
            self.write_history()
        self.steplog.epoch_end(self.progress.updates, metrics, dev_loss, time.time() - t0)
        self.log(f"epoch {self.progress.epoch}: dev {format_metrics(metrics)}; loss {format_metrics(record['train_loss'])}; "
                 f"{record['train_examples_per_second']} train examples/s" + ("; new best, saved" if improved else ""))
    if improved:
        self.progress.best_score, self.progress.best_metrics = score, {**metrics, "epoch": self.progress.epoch}
        if self.par.main:
            with self.average.applied():
                atomic_folder(self.run_dir / "best", self.save_model)
    if self.on_eval is not None and self.on_eval(self.progress.updates, score):
        self.halted = True
        self.log(f"stopped at optimizer step {self.progress.updates}: the search pruned this run")
    return improved

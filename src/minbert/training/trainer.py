"""The one training loop: schedule -> per-task batches -> summed loss -> AdamW + warm-up/decay -> dev eval.

Each epoch ends with a dev evaluation (and, with `train.eval_every`, every N optimizer steps within it); the
checkpoint with the best dev score (the course's overall score when SST, Quora and STS are all trained, else the
mean of the task metrics) is kept in RUN_DIR/best, and its dev and test-student predictions are written in the
course's format. `on_eval(step, score)`, when set, hears each evaluation; a true answer (a search pruning the
run) ends the run there as an early stop does: best/ and the predictions are what it reached.
Every `train.log_every` optimizer steps a line goes to RUN_DIR/steps.jsonl (steplog.py); run messages go
to standard error and RUN_DIR/log.txt. RUN_DIR/last is a full training checkpoint (every
`train.checkpoint_every` steps and at each epoch's end) from which `minbert train --resume RUN_DIR`
continues a killed run exactly.

SIGINT / SIGTERM pause the run: the current optimizer step ends, `last/` is saved, and
`TrainingInterrupted` is raised (the CLI exits 130 / 143; interrupts.py). Beside the loop: a step is
step.py's, a checkpoint's contents state.py's, the sets and the staged freezing setup.py's, and a run's
lifecycle (checks, the run folder, `train` and `resume`) run.py's.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import torch

from .. import writes
from ..errors import CheckpointError, TrainingError  # noqa: F401  (re-exported where raised)
from ..schema import Config
from ..data.batching import BatchStream
from ..data.loading import rows_fingerprint
from ..evaluate import format_metrics, write_split_predictions
from ..model import build_model
from ..optim import build_optimizer, lr_lambda, parameter_groups
from ..combine import build_combiner
from ..distributed import Parallel
from ..schedules import TaskSizes, build_schedule, expected_examples
from ..smart import build_regulariser
from .distill import Teacher, TeacherOutputs, check_teachers
from .average import build_average
from .interrupts import StopSignals, agreed_signal, pause_if_asked
from .state import TrainState, restore_checkpoint, save_checkpoint
from .setup import RunLog, pick_device, schedule_line, seed_everything, task_sets, trained_part
from .step import forward_backward, optimizer_step
from .dev_eval import evaluate_dev
from .steplog import StepLog, keep_until


class Trainer:
    """Holds the model, data streams, optimizer and progress of one run; `run()` trains to the end."""

    AMP_DEVICES = ("cuda",)  # where train.precision bf16 / fp16 autocasts (CPU autocast is slow without AMX)

    def __init__(self, cfg: Config, run_dir: Path, data_path: Path, log: RunLog, parallel: Parallel | None = None,
                 stop: StopSignals | None = None, backbone: Path | None = None,
                 teachers: dict[str, list[Teacher]] | None = None, init: Path | None = None):
        """`backbone`: the folder cfg.model.backbone was resolved to (None: resolve it here); `teachers`: what
        `check_teachers` found (None: check them here); `init`: a checkpoint folder whose weights the model
        starts from (`check_init`: train.init_from)."""
        self.cfg, self.run_dir, self.data_path, self.log = cfg, run_dir, data_path, log
        self.par = parallel or Parallel()
        self.stop = stop
        self.on_eval: Callable[[int, float], bool] | None = None  # hears each dev score; True stops the run
        self.halted = False  # on_eval asked the run to stop
        self.saved_at: tuple[int, int] | None = None  # (epoch, step) of the last save of last/
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.train.seed)
        self.device = pick_device(cfg.train.device)
        model, self.tokenizer = build_model(cfg, backbone)
        log(f"backbone: {cfg.model.backbone or 'all-MiniLM-L6-v2 (default)'}"
            + (f" ({backbone})" if backbone is not None and str(backbone) != cfg.model.backbone else "") + "; "
            f"{model.encoder.num_parameters():,} encoder parameters; device {self.device}")
        if init is not None:
            model.load(init)
            log(f"weights (encoder and heads) from {init}")
        if teachers is None:
            teachers = check_teachers(cfg, data_path)
        self.train_sets, self.dev_sets, taught = task_sets(cfg, model, self.tokenizer, data_path, log, set(teachers))
        self.model = model.to(self.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # TF32 tensor cores for fp32 matmuls (Ampere and later)
            torch.backends.cudnn.allow_tf32 = True
        if cfg.train.compile:
            self.model.encoder.compile(dynamic=True)  # batch shapes vary with bucketing
        self.generator = torch.Generator().manual_seed(cfg.train.seed)
        self.streams = {n: BatchStream(self.train_sets[n], self.tokenizer, cfg.train.batch_size[n], self.generator,
                                       cfg.train.bucket) for n in cfg.tasks}
        sizes = TaskSizes({n: len(d) for n, d in self.train_sets.items()}, {n: cfg.train.batch_size[n] for n in cfg.tasks})
        self.schedule = build_schedule(cfg.train.schedule, sizes, cfg.train.epochs, cfg.train.seed)
        plans = [self.schedule.plan(e) for e in range(1, cfg.train.epochs + 1)]
        self.steps_per_epoch = len(plans[0])
        updates = [math.ceil(len(p) / cfg.train.accumulate) for p in plans]
        total_updates = sum(updates)
        epoch_starts = [sum(updates[:e]) for e in range(cfg.train.epochs)]
        self.optimizer = build_optimizer(cfg.train.optimizer, parameter_groups(model, cfg), lr=cfg.train.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(
            total_updates, cfg.train.warmup, cfg.train.lr_decay, epoch_starts, cfg.train.milestones, cfg.train.gamma))
        self.combiner = build_combiner(cfg.train.combine, list(model.encoder.parameters()), cfg.train.seed,
                                       model.encoder.embeddings.word_embeddings,
                                       self.par.sum_gradients if self.par.world > 1 else None, cfg.tasks)
        self.regulariser = build_regulariser(cfg.train.smart, self.model)
        self.average = build_average(cfg.train.ema, self.model)  # evaluated and saved as best/ when set
        self.teacher_outputs = TeacherOutputs(cfg, teachers, taught, run_dir, self.device, log,
                                              share=self.par.main)
        self.distiller = self.teacher_outputs.distiller(cfg.train.distill, model.tasks, total_updates)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.precision)
        if self.amp_dtype is not None and self.device.type not in self.AMP_DEVICES:
            log(f"train.precision {cfg.train.precision}: mixed precision runs on CUDA only; this run is fp32 on {self.device}")
            self.amp_dtype = None
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        self.progress = TrainState()  # everything the loop counts; it goes into each checkpoint
        self.progress.new_epoch(cfg.tasks)
        self.steplog = StepLog(run_dir, cfg.tasks, cfg.train.log_every, cfg.train.tensorboard, self.par.main)
        log(schedule_line(cfg, self.steps_per_epoch, expected_examples(plans[0], cfg.train.batch_size), total_updates,
                          sum(p.numel() for p in model.parameters())))

    # ---- the loop ----
    def run(self) -> dict[str, float]:
        """Train, then write the best epoch's predictions. A failure to write (a WriteError) stops the run; its
        last complete checkpoint stays."""
        start = time.time()
        self.steplog.open(self.progress.updates)
        try:
            while self.progress.epoch <= self.cfg.train.epochs and not self.should_stop_early():
                pause_if_asked(self)
                self.train_epoch()
                if not self.halted:  # else pruned within the epoch, just after an evaluation
                    self.end_epoch()
            pause_if_asked(self)
        finally:
            self.steplog.close()
        self.log(f"training done in {time.time() - start:.0f} s; best dev (epoch {self.progress.best_metrics.get('epoch')}): "
                 f"{format_metrics({k: v for k, v in self.progress.best_metrics.items() if k != 'epoch'})}")
        if not self.par.main:
            self.par.barrier()  # rank 0 writes the predictions
            return self.progress.best_metrics
        writes.write_text(self.run_dir / "best_metrics.json", json.dumps(self.progress.best_metrics, indent=2) + "\n")
        self.model.load(self.run_dir / "best")
        write_split_predictions(self.model, self.tokenizer, self.cfg, self.data_path, self.run_dir, "dev",
                                self.dev_sets, self.log)
        if self.cfg.eval.test_predictions:
            write_split_predictions(self.model, self.tokenizer, self.cfg, self.data_path, self.run_dir, "test",
                                    None, self.log)
        self.par.barrier()
        return self.progress.best_metrics

    def begin_epoch(self) -> None:
        """Train mode, and what this epoch trains (staged freezing): call before `train_step`."""
        self.model.train()
        self.model.train_only(trained_part(self.cfg, self.progress.epoch))  # a frozen part keeps its dropout off
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.nothing_to_learn: set[str] = set()  # tasks with no trainable parameter this epoch (logged once)

    def train_step(self, step_tasks: list[str], update: bool = True) -> bool:
        """One schedule step (a batch of each listed task); with `update`, the optimizer update that ends it
        (without: the gradients accumulate). Returns whether an update was taken."""
        finite = self.forward_backward(step_tasks)
        return self.optimizer_step(finite) if update else False

    def train_epoch(self) -> None:
        cfg = self.cfg
        self.begin_epoch()
        plan = self.schedule.plan(self.progress.epoch)
        t0 = time.time()
        with self.steplog.progress_bar(len(plan), self.progress.step, f"epoch {self.progress.epoch}") as bar:
            while self.progress.step < len(plan) and not self.halted:
                step_tasks = plan[self.progress.step]
                self.progress.step += 1
                ends_update = self.progress.step % cfg.train.accumulate == 0 or self.progress.step == len(plan)
                stepped = self.train_step(step_tasks, update=ends_update)
                if ends_update:
                    self.progress.train_seconds += time.time() - t0
                    t0 = time.time()
                    if self.after_update(stepped, within=self.progress.step < len(plan)):
                        t0 = time.time()  # a dev evaluation's time is not training time
                bar.update(1)
        self.progress.train_seconds += time.time() - t0

    def after_update(self, stepped: bool, within: bool) -> bool:
        """Between two optimizer steps: a checkpoint (`train.checkpoint_every`), a dev evaluation (`train.eval_every`;
        returns whether one ran), a pause on SIGINT / SIGTERM (this update is done)."""
        every, evals, updates = self.cfg.train.checkpoint_every, self.cfg.train.eval_every, self.progress.updates
        if stepped and within and every and updates % every == 0:
            self.save_last()
        evaluated = bool(stepped and within and evals and updates % evals == 0)
        if evaluated:
            improved = self.evaluate_dev(mid_epoch=True)
            self.begin_epoch()  # training mode again
            if improved:
                self.save_last()  # last/ holds the best score best/ now has, so a resume never replaces it by a lower one
        if agreed_signal(self.stop, self.par, self.device):
            pause_if_asked(self)
        return evaluated

    def forward_backward(self, step_tasks: list[str]) -> bool:
        return forward_backward(self, step_tasks)

    def optimizer_step(self, finite_losses: bool) -> bool:
        return optimizer_step(self, finite_losses)

    def end_epoch(self) -> None:
        self.evaluate_dev()
        self.progress.epoch, self.progress.step = self.progress.epoch + 1, 0
        self.progress.new_epoch(self.cfg.tasks)
        self.save_last()

    def evaluate_dev(self, mid_epoch: bool = False) -> bool:
        return evaluate_dev(self, mid_epoch)

    def should_stop_early(self) -> bool:
        patience = self.cfg.train.early_stop_patience
        if self.halted or not patience or not self.progress.history:
            return self.halted
        waited = self.progress.history[-1]["epoch"] - self.progress.best_metrics.get("epoch", 0)
        if waited >= patience:
            self.log(f"early stop: no better dev score for {waited} epochs (train.early_stop_patience {patience})")
            return True
        return False

    def write_history(self) -> None:
        writes.write_text(self.run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.progress.history))

    # ---- checkpoints (state.py: what they hold, how they are written and read) ----
    def save_model(self, folder: Path) -> None:
        self.model.save(folder)
        self.tokenizer.save_pretrained(folder)

    def data_fingerprint(self) -> dict[str, str]:
        """Rows and a hash of the ids of each training set: a resume must see the same data."""
        return {n: rows_fingerprint(d.ids) for n, d in self.train_sets.items()}

    def save_last(self) -> None:
        self.saved_at = (self.progress.epoch, self.progress.step)
        if self.par.main:
            save_checkpoint(self, self.run_dir / "last")

    def restore(self, folder: Path) -> None:
        """Continue from a `last/` checkpoint: weights, optimizer, scheduler, sampler position, RNGs, progress."""
        restore_checkpoint(self, folder)
        self.saved_at = (self.progress.epoch, self.progress.step)
        self.log(f"resumed from {folder}: epoch {self.progress.epoch}, step {self.progress.step} of {self.steps_per_epoch}, "
                 f"{self.progress.updates} optimizer steps done")

    def rewind_logs(self) -> None:
        """After `restore`: the run's logs as they were at the checkpoint (what a killed run wrote later is dropped)."""
        self.write_history()
        keep_until(self.run_dir / "grad_cosine.jsonl", self.progress.updates)

"""The one training loop: schedule -> per-task batches -> summed loss -> AdamW + warm-up/decay -> dev eval.

Each epoch ends with a dev evaluation; the checkpoint with the best dev score (the course's overall
score when SST, Quora and STS are all trained, else the mean of the task metrics) is kept in
RUN_DIR/best, and its dev and test-student predictions are written in the course's format.
Every `train.log_every` optimizer steps a line goes to RUN_DIR/steps.jsonl (steplog.py); run messages go
to standard error and RUN_DIR/log.txt. RUN_DIR/last is a full training checkpoint (every
`train.checkpoint_every` steps and at each epoch's end) from which `minbert train --resume RUN_DIR`
continues a killed run exactly.

`train` and `resume` first check everything they can without writing (`check_inputs`, which also pins a
Hub backbone to its commit), then open the run folder (locked, one writer; an earlier run is refused
unless `overwrite`), build the trainer (data and model load, still writing nothing), and only then replace
an earlier run or write config.yaml and the log. SIGINT / SIGTERM pause the run: the current optimizer
step ends, `last/` is saved, and `TrainingInterrupted` is raised (the CLI exits 130 / 143).
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch

from ..checkpoints import CheckpointError, locate_backbone, resolve_backbone
from ..config import Config, ConfigError, config_differences, load_config, save_config
from ..data.batching import BatchStream, EncodedSet, to_device
from ..data.loading import load_split, resolve_data_dir
from ..data.readers import DataError
from ..encoder import BertModel
from ..evaluate import evaluate, prediction_path, write_predictions
from ..model import MultitaskModel
from ..optim import build_optimizer, lr_lambda
from ..combine import build_combiner
from ..distributed import Parallel
from ..run_folder import RunFolder
from ..schedules import TaskSizes, build_schedule, expected_examples
from ..smart import build_regulariser
from ..tasks import get_task
from ..tokenizer import Tokenizer
from .interrupts import StopSignals, TrainingInterrupted
from .state import (DiskError, atomic_folder, load_optimizer_state, read_trainer_state,
                    recover_interrupted_swap, write_trainer_state)
from .steplog import StepLog, learning_rates, require_tensorboard


class TrainingError(RuntimeError):
    """Training cannot go on (too many non-finite steps, out of memory); the message says what to do."""


class RunLog:
    """Prints a line on standard error (standard output carries only a command's JSON result) and appends
    it to RUN_DIR/log.txt; with `hold`, lines are kept in memory until `start()` (a run that has not
    validated yet writes nothing into its folder)."""

    def __init__(self, path: Path, hold: bool = False):
        self.path = path
        self.held: list[str] | None = [] if hold else None

    def __call__(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        if self.held is not None:
            self.held.append(line)
            return
        with self.path.open("a") as f:
            f.write(line + "\n")

    def start(self, fresh: bool = False) -> None:
        """Write the held lines (into a new log.txt when `fresh`) and append from now on."""
        held, self.held = self.held or [], None
        with self.path.open("w" if fresh else "a") as f:
            f.write("".join(line + "\n" for line in held))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def selection_score(metrics: dict[str, float], tasks: list[str]) -> float:
    """What 'best' means: the course's overall score if present, else the mean task metric."""
    if "overall" in metrics:
        return metrics["overall"]
    return float(np.mean([metrics[t] for t in tasks]))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(cfg: Config, backbone: str | Path | None = None) -> tuple[MultitaskModel, Tokenizer]:
    """The model and tokenizer of `cfg`, the encoder from `backbone` (a folder) or else `cfg.model.backbone`."""
    folder = resolve_backbone(backbone if backbone is not None else cfg.model.backbone)  # once: a Hub id is a lookup
    tokenizer = Tokenizer.from_pretrained(folder, max_length=cfg.model.max_length)
    encoder = BertModel.from_pretrained(folder)
    model = MultitaskModel(encoder, cfg.tasks, {t: cfg.model.head_config(t) for t in cfg.tasks}, cfg.model.shared_heads)
    return model, tokenizer


def parameter_groups(model: MultitaskModel, cfg: Config) -> list[dict]:
    """The encoder and each task head with its own learning rate, each split into decayed weights and
    undecayed biases / LayerNorm weights. Frozen parameters are included: they get no gradient, so no update."""
    modules = [("encoder", model.encoder, cfg.train.lr)]
    for task, head in model.heads.items():
        lr = (cfg.train.head_lrs or {}).get(task, cfg.train.head_lr or cfg.train.lr)
        modules.append((f"head:{task}", head, lr))
    groups = []
    for name, module, lr in modules:
        named = list(module.named_parameters())
        decay = [p for n, p in named if p.ndim >= 2 and "LayerNorm" not in n]
        no_decay = [p for n, p in named if not (p.ndim >= 2 and "LayerNorm" not in n)]
        groups += [g for g in ({"name": name, "params": decay, "lr": lr, "weight_decay": cfg.train.weight_decay},
                               {"name": name, "params": no_decay, "lr": lr, "weight_decay": 0.0}) if g["params"]]
    return groups


def encoder_trainable(cfg: Config, epoch: int) -> bool:
    """Staged freezing: is the encoder trained in this epoch? (`freeze_encoder` = heads only, throughout.)"""
    if cfg.train.freeze_encoder:
        return False
    end = 0
    for stage in cfg.train.freeze_stages or []:
        end += stage.epochs
        if epoch <= end:
            return stage.train == "all"
    return cfg.train.freeze_stages[-1].train == "all" if cfg.train.freeze_stages else True


def check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise DiskError(f"cannot write to run directory {run_dir}: {e.strerror or e}") from e


class Trainer:
    """Holds the model, data streams, optimizer and progress of one run; `run()` trains to the end."""

    AMP_DEVICES = ("cuda",)  # where train.precision bf16 / fp16 autocasts (CPU autocast is slow without AMX)

    def __init__(self, cfg: Config, run_dir: Path, data_path: Path, log: RunLog, parallel: Parallel | None = None,
                 stop: StopSignals | None = None, backbone: Path | None = None):
        """`backbone`: the folder cfg.model.backbone was resolved to (None: resolve it here)."""
        self.cfg, self.run_dir, self.data_path, self.log = cfg, run_dir, data_path, log
        self.par = parallel or Parallel()
        self.stop = stop
        self.saved_at: tuple[int, int] | None = None  # (epoch, step) of the last save of last/
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.train.seed)
        self.device = pick_device(cfg.train.device)
        model, self.tokenizer = build_model(cfg, backbone)
        log(f"backbone: {cfg.model.backbone or 'all-MiniLM-L6-v2 (default)'}"
            + (f" ({backbone})" if backbone is not None and str(backbone) != cfg.model.backbone else "") + "; "
            f"{model.encoder.num_parameters():,} encoder parameters; device {self.device}")
        self.train_sets: dict[str, EncodedSet] = {}
        self.dev_sets: dict[str, EncodedSet] = {}
        for name, task in model.tasks.items():
            joint = model.joint_input(name)
            self.train_sets[name] = load_split(task, "train", data_path, self.tokenizer, joint, cfg.data.strict, log,
                                               cfg.data.train_limit, cfg.train.seed, cfg.data.train_fraction)
            self.dev_sets[name] = load_split(task, "dev", data_path, self.tokenizer, joint, cfg.data.strict, log,
                                             cfg.data.dev_limit)
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
                                       self.par.sum_gradients if self.par.world > 1 else None)
        self.regulariser = build_regulariser(cfg.train.smart, self.model)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.precision)
        if self.amp_dtype is not None and self.device.type not in self.AMP_DEVICES:
            log(f"train.precision {cfg.train.precision}: mixed precision runs on CUDA only; this run is fp32 on {self.device}")
            self.amp_dtype = None
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        # progress: everything here goes into each checkpoint
        self.epoch, self.step = 1, 0  # the epoch in progress, and schedule steps done in it
        self.updates = 0  # optimizer steps taken
        self.best_score, self.best_metrics = -math.inf, {}
        self.history: list[dict] = []  # one record per finished epoch
        self.bad_in_a_row, self.bad_total = 0, 0
        self._reset_epoch_totals()
        self.steplog = StepLog(run_dir, cfg.tasks, cfg.train.log_every, cfg.train.tensorboard, self.par.main)
        per_task = expected_examples(plans[0], cfg.train.batch_size)
        log(f"schedule {cfg.train.schedule.name}, combine {cfg.train.combine.name}: {self.steps_per_epoch} steps in "
            f"epoch 1 ({', '.join(f'{n}: {per_task.get(n, 0)} examples' for n in cfg.tasks)}), {cfg.train.epochs} epochs, "
            f"{total_updates} optimizer steps; batch sizes {{{', '.join(f'{n}: {cfg.train.batch_size[n]}' for n in cfg.tasks)}}}; "
            f"{sum(p.numel() for p in model.parameters()):,} parameters")

    def _reset_epoch_totals(self) -> None:
        self.loss_sums = {n: 0.0 for n in self.cfg.tasks}
        self.loss_counts = {n: 0 for n in self.cfg.tasks}
        self.examples, self.train_seconds = 0, 0.0

    # ---- the loop ----
    def run(self) -> dict[str, float]:
        start = time.time()
        self.steplog.open(self.updates)
        try:
            while self.epoch <= self.cfg.train.epochs and not self.should_stop_early():
                self.pause_if_asked()
                self.train_epoch()
                self.end_epoch()
            self.pause_if_asked()
        finally:
            self.steplog.close()
        self.log(f"training done in {time.time() - start:.0f} s; best dev (epoch {self.best_metrics.get('epoch')}): "
                 f"{format_metrics({k: v for k, v in self.best_metrics.items() if k != 'epoch'})}")
        if not self.par.main:
            self.par.barrier()  # rank 0 writes the predictions
            return self.best_metrics
        (self.run_dir / "best_metrics.json").write_text(json.dumps(self.best_metrics, indent=2) + "\n")
        self.model.load(self.run_dir / "best")
        write_split_predictions(self.model, self.tokenizer, self.cfg, self.data_path, self.run_dir, "dev",
                                self.dev_sets, self.log)
        if self.cfg.eval.test_predictions:
            write_split_predictions(self.model, self.tokenizer, self.cfg, self.data_path, self.run_dir, "test",
                                    None, self.log)
        self.par.barrier()
        return self.best_metrics

    def train_epoch(self) -> None:
        cfg = self.cfg
        self.model.train()
        trained = encoder_trainable(cfg, self.epoch)
        self.model.freeze_encoder(not trained)
        if not trained:
            self.model.encoder.eval()  # a frozen encoder also keeps its dropout off
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.nothing_to_learn: set[str] = set()  # tasks with no trainable parameter this epoch (logged once)
        plan = self.schedule.plan(self.epoch)
        t0 = time.time()
        with self.steplog.progress_bar(len(plan), self.step, f"epoch {self.epoch}") as bar:
            while self.step < len(plan):
                step_tasks = plan[self.step]
                self.step += 1
                finite = self.forward_backward(step_tasks)
                if self.step % cfg.train.accumulate == 0 or self.step == len(plan):
                    stepped = self.optimizer_step(finite)
                    every = cfg.train.checkpoint_every
                    if stepped and every and self.updates % every == 0 and self.step < len(plan):
                        self.train_seconds += time.time() - t0
                        t0 = time.time()
                        self.save_last()
                    if self.stop_signal():  # SIGINT / SIGTERM: this update is done; pause here
                        self.train_seconds += time.time() - t0
                        self.pause_if_asked()
                bar.update(1)
        self.train_seconds += time.time() - t0

    def forward_backward(self, step_tasks: list[str]) -> bool:
        """One schedule step: a batch of each listed task, one backward per task (the summed loss's gradient)."""
        finite = True
        every = self.cfg.train.combine.log_cosine_every
        self.combiner.begin(log_cosines=bool(every) and (self.updates + 1) % every == 0)
        for name in step_tasks:
            batch = self.streams[name].next(self.par.share if self.par.world > 1 else None)
            try:
                with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                    enabled=self.amp_dtype is not None):
                    inputs = to_device(batch["inputs"], self.device)
                    out = self.model.outputs(name, inputs)
                    loss = self.model.loss(name, out, batch["labels"].to(self.device))
                    extra = self.regulariser.extra_loss(self.model, name, inputs, out.value)
                total = loss if extra is None else loss + extra
                scaled = total * batch["weight"] / self.cfg.train.accumulate
                learned = self.combiner.backward(name, self.scaler.scale(scaled) if self.scaler else scaled)
                if not learned and name not in self.nothing_to_learn:
                    self.nothing_to_learn.add(name)
                    self.log(f"task {name}: nothing to train this epoch (encoder frozen, head without parameters): "
                             "its loss is recorded, no gradient comes from it")
            except torch.OutOfMemoryError as e:
                raise TrainingError(
                    f"out of memory on {self.device} with batch size {self.cfg.train.batch_size[name]} for task "
                    f"{name}: lower train.batch_size.{name} and raise train.accumulate to keep the effective batch") from e
            value = loss.item()
            if math.isfinite(value):
                self.loss_sums[name] += value
                self.loss_counts[name] += 1
            else:
                finite = False
            self.examples += batch["global_size"]
            self.steplog.batch(name, value, batch["global_size"])
        cos = self.combiner.finish()
        if cos is not None and self.par.main:
            with (self.run_dir / "grad_cosine.jsonl").open("a") as f:
                f.write(json.dumps({"update": self.updates + 1, "epoch": self.epoch, "step": self.step,
                                    "cosine": cos}) + "\n")
        return finite

    def optimizer_step(self, finite_losses: bool) -> bool:
        """Clip and step; a non-finite loss or gradient norm skips the step. Returns whether it stepped."""
        self.sum_gradients_over_processes()
        clip = self.cfg.train.grad_clip or math.inf
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.trainable, clip)
        if self.scaler and finite_losses and not math.isfinite(norm.item()):
            self.scaler.step(self.optimizer)  # an fp16 overflow: the scaler skips the step and lowers its scale
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            return False
        if finite_losses and math.isfinite(norm.item()):
            if self.scaler:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            applied = learning_rates(self.optimizer)  # this update's rates, before the schedule moves on
            self.scheduler.step()
            self.regulariser.after_step(self.model)
            self.updates += 1
            self.steplog.update(self.updates, self.epoch, self.step, applied, norm.item())
            self.bad_in_a_row = 0
            self.optimizer.zero_grad(set_to_none=True)
            return True
        self.optimizer.zero_grad(set_to_none=True)
        self.bad_in_a_row += 1
        self.bad_total += 1
        self.log(f"warning: non-finite loss or gradient at epoch {self.epoch} step {self.step}: step skipped "
                 f"({self.bad_in_a_row} in a row, {self.bad_total} in all)")
        if self.bad_in_a_row >= self.cfg.train.max_bad_steps:
            raise TrainingError(
                f"stopped: {self.bad_in_a_row} non-finite steps in a row (epoch {self.epoch}, step {self.step}); "
                f"the last good checkpoint is {self.run_dir / 'last'} (try a lower train.lr)")
        return False

    def sum_gradients_over_processes(self) -> None:
        """Data-parallel: sum the accumulated gradients over the processes (PCGrad's encoder gradients were
        summed task by task already)."""
        if self.par.world == 1:
            return
        done = set(map(id, self.combiner.shared)) if self.combiner.reduce is not None else set()
        params = [p for p in self.trainable if id(p) not in done]
        for p, g in zip(params, self.par.sum_gradients([p.grad for p in params], params)):
            p.grad = g

    def end_epoch(self) -> None:
        t0 = time.time()
        dev_loss: dict[str, float] = {}
        metrics, _ = evaluate(self.model, self.dev_sets, self.tokenizer, self.cfg.eval.batch_size, self.device, dev_loss)
        score = selection_score(metrics, self.cfg.tasks)
        record = {"epoch": self.epoch, "updates": self.updates,
                  "train_loss": {n: self.loss_sums[n] / max(1, self.loss_counts[n]) for n in self.cfg.tasks},
                  "dev": metrics, "dev_loss": dev_loss, "skipped_steps": self.bad_total,
                  "steps": self.step, "train_seconds": round(self.train_seconds, 1),
                  "train_examples_per_second": round(self.examples / max(self.train_seconds, 1e-9), 1),
                  "eval_seconds": round(time.time() - t0, 1)}
        self.history.append(record)
        if self.par.main:
            self.write_history()
        self.steplog.epoch_end(self.updates, metrics, dev_loss, time.time() - t0)
        improved = score > self.best_score
        self.log(f"epoch {self.epoch}: dev {format_metrics(metrics)}; loss {format_metrics(record['train_loss'])}; "
                 f"{record['train_examples_per_second']} train examples/s" + ("; new best, saved" if improved else ""))
        if improved:
            self.best_score, self.best_metrics = score, {**metrics, "epoch": self.epoch}
            if self.par.main:
                atomic_folder(self.run_dir / "best", self.save_model)
        self.epoch, self.step = self.epoch + 1, 0
        self._reset_epoch_totals()
        self.save_last()

    def stop_signal(self) -> int:
        """The signal that asks the run to pause (0: none). With several processes, the largest any of them
        received, so all pause at the same optimizer step."""
        signum = self.stop.requested() if self.stop is not None else 0
        if self.par.world > 1:
            flag = torch.tensor([signum], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            signum = int(flag.item())
        return signum

    def pause_if_asked(self) -> None:
        """On SIGINT / SIGTERM: save last/ (unless it holds this very point already) and raise TrainingInterrupted."""
        signum = self.stop_signal()
        if not signum:
            return
        if self.saved_at != (self.epoch, self.step):
            self.save_last()
        self.par.barrier()  # the other processes wait for rank 0's save
        self.log(f"interrupted by {signal_name(signum)} at epoch {self.epoch} step {self.step} "
                 f"({self.updates} optimizer steps): {self.run_dir / 'last'} saved")
        raise TrainingInterrupted(signum, self.epoch, self.step, self.run_dir)

    def should_stop_early(self) -> bool:
        patience = self.cfg.train.early_stop_patience
        if not patience or not self.history:
            return False
        waited = self.history[-1]["epoch"] - self.best_metrics.get("epoch", 0)
        if waited >= patience:
            self.log(f"early stop: no better dev score for {waited} epochs (train.early_stop_patience {patience})")
            return True
        return False

    def write_history(self) -> None:
        (self.run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in self.history))

    # ---- checkpoints ----
    def save_model(self, folder: Path) -> None:
        self.model.save(folder)
        self.tokenizer.save_pretrained(folder)

    def state(self) -> dict:
        return {
            "epoch": self.epoch, "step": self.step, "updates": self.updates,
            "best_score": self.best_score, "best_metrics": self.best_metrics, "history": self.history,
            "bad_in_a_row": self.bad_in_a_row, "bad_total": self.bad_total,
            "loss_sums": self.loss_sums, "loss_counts": self.loss_counts,
            "examples": self.examples, "train_seconds": self.train_seconds, "steplog": self.steplog.state(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {k: v for k, v in self.scheduler.state_dict().items() if k != "lr_lambdas"},
            "streams": {n: s.state() for n, s in self.streams.items()},
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "teacher": self.regulariser.teacher.state_dict() if self.regulariser.teacher is not None else None,
            "rng": {"torch": torch.get_rng_state(), "batches": self.generator.get_state(),
                    "combine": self.combiner.generator.get_state()},
            "config": self.cfg.to_dict(),
            "data": self.data_fingerprint(),
        }

    def data_fingerprint(self) -> dict[str, str]:
        """Rows and a hash of the ids of each training set: a resume must see the same data."""
        return {n: f"{len(d)} rows, ids {hashlib.sha1(' '.join(d.ids).encode()).hexdigest()[:12]}"
                for n, d in self.train_sets.items()}

    def save_last(self) -> None:
        self.saved_at = (self.epoch, self.step)
        if not self.par.main:
            return

        def write(folder: Path) -> None:
            self.save_model(folder)
            write_trainer_state(folder, self.state())
        atomic_folder(self.run_dir / "last", write)

    def restore(self, folder: Path) -> None:
        """Continue from a `last/` checkpoint: weights, optimizer, scheduler, sampler position, RNGs, progress."""
        state = read_trainer_state(folder)
        now = self.data_fingerprint()
        changed = [f"{n}: {state['data'].get(n)} then, {now[n]} now" for n in now if state["data"].get(n) != now[n]]
        if changed:
            raise CheckpointError(f"{folder}: the training data differs from the run's ({'; '.join(changed)}); "
                                  f"resume with the same data (--data-dir)")
        self.model.load(folder)
        try:
            self._apply_state(state)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as e:
            why = " ".join(f"{type(e).__name__}: {e}".split())[:200]
            raise CheckpointError(f"{folder / 'trainer_state.json'}: does not fit this run ({why})") from None
        self.saved_at = (self.epoch, self.step)
        self.log(f"resumed from {folder}: epoch {self.epoch}, step {self.step} of {self.steps_per_epoch}, "
                 f"{self.updates} optimizer steps done")

    def _apply_state(self, state: dict) -> None:
        load_optimizer_state(self.optimizer, state["optimizer"])
        self.scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": [None] * len(self.optimizer.param_groups)})
        for name, s in self.streams.items():
            s.load_state(state["streams"][name])
        torch.set_rng_state(state["rng"]["torch"])
        self.generator.set_state(state["rng"]["batches"])
        self.combiner.generator.set_state(state["rng"]["combine"])
        if state.get("teacher") is not None:
            self.regulariser.teacher.load_state_dict(state["teacher"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if set(state["loss_sums"]) != set(self.cfg.tasks) or set(state["loss_counts"]) != set(self.cfg.tasks):
            raise KeyError(f"loss_sums / loss_counts are not of the tasks {self.cfg.tasks}")
        for key in ("epoch", "step", "updates", "best_score", "best_metrics", "history", "bad_in_a_row",
                    "bad_total", "loss_sums", "loss_counts", "examples", "train_seconds"):
            setattr(self, key, state[key])
        self.steplog.load_state(state.get("steplog"))

    def rewind_logs(self) -> None:
        """After `restore`: the run's logs as they were at the checkpoint (what a killed run wrote later is dropped)."""
        self.write_history()
        cos_log = self.run_dir / "grad_cosine.jsonl"
        if cos_log.exists():
            kept = []
            for line in cos_log.read_text().splitlines():
                try:
                    keep = json.loads(line)["update"] <= self.updates
                except (ValueError, KeyError, TypeError):
                    keep = False  # a line cut by the kill
                if keep:
                    kept.append(line)
            cos_log.write_text("".join(r + "\n" for r in kept))


def load_run_config(path: Path) -> Config:
    """The config.yaml of a run folder, read back as untrusted: any problem is a `CheckpointError` naming it."""
    try:
        return load_config(path)
    except ConfigError as e:
        raise CheckpointError(str(e) if str(e).startswith(str(path)) else f"{path}: {e}") from None


def check_inputs(cfg: Config, data_dir: str | None) -> tuple[Path, Path]:
    """Everything that can be checked before the run folder is touched: TensorBoard when asked for, the data
    files and the backbone (a Hub id is pinned to its commit in `cfg`, so the saved config.yaml, a resume and
    a re-run use exactly these weights). Writes nothing; returns the data folder (also recorded in
    `cfg.data.dir`, as the saved config names it) and the backbone folder."""
    if cfg.train.tensorboard:
        require_tensorboard()
    data_path = resolve_data_dir(data_dir, cfg.data.dir)
    for name in cfg.tasks:
        for split in ("train", "dev"):
            path = get_task(name).path(data_path, split)
            if not path.is_file():
                raise DataError(f"{path}: file not found")
    folder = pin_backbone(cfg)
    Tokenizer.from_pretrained(folder, max_length=cfg.model.max_length)  # the folder and its vocabulary
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder}: no config.json (is this a BERT checkpoint folder?)")
    cfg.data.dir = str(data_path.resolve())
    return data_path, folder


def pin_backbone(cfg: Config) -> Path:
    """Resolve cfg.model.backbone once: a Hub id becomes `org/name@commit` in cfg; returns the local folder."""
    located = locate_backbone(cfg.model.backbone)
    cfg.model.backbone = located.spec
    return located.folder


def begin_run(folder: RunFolder, cfg: Config, log: RunLog, fresh: bool) -> None:
    """The run has validated: replace an earlier run (overwrite), write config.yaml and the held log lines."""
    check_writable(folder.path)
    if fresh:
        folder.clear_for_new_run()
    save_config(cfg, folder.path / "config.yaml")
    log.start(fresh=fresh)


def train(cfg: Config, run_dir: Path, data_dir: str | None = None, parallel: Parallel | None = None,
          overwrite: bool = False) -> dict[str, float]:
    """Train per `cfg` from scratch, writing the run directory; returns the best dev metrics.
    A directory that holds a run is refused (RunFolderError) unless `overwrite`, which replaces the earlier
    run once the new one has validated. With `parallel` (torchrun), every process trains its share of
    each batch and rank 0 locks and writes the folder."""
    from ..preflight import preflight

    preflight(cfg, data_dir)  # device, backbone, data: before the run directory is touched
    par = parallel or Parallel()
    data_path, backbone = check_inputs(cfg, data_dir)  # every rank pins the same cached commit
    with ExitStack() as stack:
        log = lambda line: None  # noqa: E731 -- rank 0 logs
        if par.main:
            folder = stack.enter_context(RunFolder.new_run(run_dir, overwrite))
            log = RunLog(run_dir / "log.txt", hold=True)
            log(f"minbert train: tasks {cfg.tasks}, data {data_path}, run {run_dir}"
                + (f", {par.world} processes" if par.world > 1 else ""))
        stop = stack.enter_context(StopSignals(second_sigint_stops=par.world == 1))
        trainer = Trainer(cfg, run_dir, data_path, log, par, stop, backbone)
        if par.main:
            begin_run(folder, cfg, log, fresh=True)
        par.barrier()
        return trainer.run()


def resume_config(run_dir: Path, new_cfg: Config | None = None, force: bool = False,
                  data_dir: str | None = None) -> tuple[Config, str | None]:
    """The config and data directory a resume of `run_dir` runs with; a changed config is refused unless `force`."""
    if not (run_dir / "config.yaml").is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no config.yaml), nothing to resume")
    saved = load_run_config(run_dir / "config.yaml")
    cfg = saved
    if new_cfg is not None:
        pin_backbone(new_cfg)  # a Hub id compares by the commit it names now
        if new_cfg.data.dir is None:  # a config file rarely names the data dir; the run recorded it
            new_cfg.data.dir = saved.data.dir if data_dir is None else str(Path(data_dir).resolve())
        changed = config_differences(saved, new_cfg)
        if changed and not force:
            raise CheckpointError(f"{run_dir}: the config differs from the run's in {', '.join(changed)}; "
                                  "resume with the same config, or add --force")
        cfg = new_cfg
    if data_dir is None:
        data_dir = cfg.data.dir or saved.data.dir
    return cfg, data_dir


def resume(run_dir: Path, new_cfg: Config | None = None, force: bool = False,
           data_dir: str | None = None) -> dict[str, float]:
    """Continue a killed run from RUN_DIR/last; a changed config is refused unless `force`."""
    from ..preflight import preflight_resume

    cfg, data_dir = resume_config(run_dir, new_cfg, force, data_dir)
    preflight_resume(cfg, run_dir, data_dir)  # config, device, backbone, data, last/: before anything changes
    data_path, backbone = check_inputs(cfg, data_dir)
    with RunFolder.lock(run_dir) as folder, StopSignals() as stop:
        recover_interrupted_swap(run_dir / "last")
        recover_interrupted_swap(run_dir / "best")
        log = RunLog(run_dir / "log.txt", hold=True)
        trainer = Trainer(cfg, run_dir, data_path, log, stop=stop, backbone=backbone)
        if (run_dir / "last").is_dir():
            trainer.restore(run_dir / "last")
        else:
            log(f"no checkpoint in {run_dir / 'last'} yet: starting the run from the beginning")
        begin_run(folder, cfg, log, fresh=False)
        trainer.rewind_logs()
        return trainer.run()


def write_split_predictions(model: MultitaskModel, tokenizer: Tokenizer, cfg: Config, data_path: Path,
                            run_dir: Path, split: str, sets: dict[str, EncodedSet] | None,
                            log, tasks: list[str] | None = None) -> dict[str, float]:
    """Predict every task (or those in `tasks`) on `split` (dev or test), write the course's files into
    `run_dir`/predictions, return metrics (dev only)."""
    if sets is None:
        sets = {n: load_split(t, split, data_path, tokenizer, model.joint_input(n), cfg.data.strict, log,
                              cfg.data.dev_limit if split == "dev" else None)
                for n, t in model.tasks.items() if tasks is None or n in tasks}
    device = next(model.parameters()).device
    metrics, predictions = evaluate(model, sets, tokenizer, cfg.eval.batch_size, device)
    for name, preds in predictions.items():
        write_predictions(model.tasks[name], sets[name].ids, preds, prediction_path(run_dir, name, split))
    log(f"{split} predictions written to {run_dir / 'predictions'}" + (f"; {split} {format_metrics(metrics)}" if metrics else ""))
    return metrics


def signal_name(signum: int) -> str:
    import signal
    return signal.Signals(signum).name


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())

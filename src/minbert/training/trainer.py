"""The one training loop: schedule -> per-task batches -> summed loss -> AdamW + warm-up/decay -> dev eval.

Each epoch ends with a dev evaluation; the checkpoint with the best dev score (the course's overall
score when SST, Quora and STS are all trained, else the mean of the task metrics) is kept in
RUN_DIR/best, and its dev and test-student predictions are written in the course's format.
RUN_DIR/last is a full training checkpoint (every `train.checkpoint_every` steps and at each epoch's
end) from which `minbert train --resume RUN_DIR` continues a killed run exactly.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..checkpoints import CheckpointError
from ..config import Config, config_differences, load_config, save_config
from ..data.batching import BatchStream, EncodedSet, to_device
from ..data.loading import load_split, resolve_data_dir
from ..data.readers import DataError
from ..encoder import BertModel
from ..evaluate import evaluate, prediction_path, write_predictions
from ..model import MultitaskModel
from ..optim import build_optimizer, lr_lambda
from ..combine import build_combiner
from ..distributed import Parallel
from ..schedules import TaskSizes, build_schedule, expected_examples
from ..smart import build_regulariser
from ..tasks import get_task
from ..tokenizer import Tokenizer
from .state import (DiskError, atomic_folder, load_optimizer_state, read_trainer_state,
                             recover_interrupted_swap, write_trainer_state)


class TrainingError(RuntimeError):
    """Training cannot go on (too many non-finite steps, out of memory); the message says what to do."""


class RunLog:
    """Prints a line and appends it to RUN_DIR/log.txt."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        with self.path.open("a") as f:
            f.write(line + "\n")


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


def build_model(cfg: Config, backbone: str | None = None) -> tuple[MultitaskModel, Tokenizer]:
    source = backbone if backbone is not None else cfg.model.backbone
    tokenizer = Tokenizer.from_pretrained(source, max_length=cfg.model.max_length)
    encoder = BertModel.from_pretrained(source)
    model = MultitaskModel(encoder, cfg.tasks, {t: cfg.model.head(t) for t in cfg.tasks}, cfg.model.shared_heads)
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

    def __init__(self, cfg: Config, run_dir: Path, data_path: Path, log: RunLog, parallel: Parallel | None = None):
        self.cfg, self.run_dir, self.data_path, self.log = cfg, run_dir, data_path, log
        self.par = parallel or Parallel()
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.train.seed)
        self.device = pick_device(cfg.train.device)
        model, self.tokenizer = build_model(cfg)
        log(f"backbone: {cfg.model.backbone or 'all-MiniLM-L6-v2 (default)'}; "
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
        while self.epoch <= self.cfg.train.epochs and not self.should_stop_early():
            self.train_epoch()
            self.end_epoch()
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
        with tqdm(total=len(plan), initial=self.step, desc=f"epoch {self.epoch}", file=sys.stderr,
                  mininterval=1.0 if sys.stderr.isatty() else 30.0) as bar:
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
                    out = self.model(name, inputs)
                    loss = self.model.loss(name, out.float(), batch["labels"].to(self.device))
                    extra = self.regulariser.extra_loss(self.model, name, inputs, out)
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
            self.scheduler.step()
            self.regulariser.after_step(self.model)
            self.updates += 1
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
        record = {"epoch": self.epoch,
                  "train_loss": {n: self.loss_sums[n] / max(1, self.loss_counts[n]) for n in self.cfg.tasks},
                  "dev": metrics, "dev_loss": dev_loss, "skipped_steps": self.bad_total, "train_seconds": round(self.train_seconds, 1),
                  "train_examples_per_second": round(self.examples / max(self.train_seconds, 1e-9), 1),
                  "eval_seconds": round(time.time() - t0, 1)}
        self.history.append(record)
        if self.par.main:
            self.write_history()
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
            "examples": self.examples, "train_seconds": self.train_seconds,
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
        for key in ("epoch", "step", "updates", "best_score", "best_metrics", "history", "bad_in_a_row",
                    "bad_total", "loss_sums", "loss_counts", "examples", "train_seconds"):
            setattr(self, key, state[key])
        self.write_history()
        cos_log = self.run_dir / "grad_cosine.jsonl"
        if cos_log.exists():  # drop what the killed run logged after this checkpoint
            kept = [r for r in cos_log.read_text().splitlines() if json.loads(r)["update"] <= self.updates]
            cos_log.write_text("".join(r + "\n" for r in kept))
        self.log(f"resumed from {folder}: epoch {self.epoch}, step {self.step} of {self.steps_per_epoch}, "
                 f"{self.updates} optimizer steps done")


def prepare_run_dir(cfg: Config, run_dir: Path, data_dir: str | None, resume: bool) -> tuple[Path, RunLog]:
    data_path = resolve_data_dir(data_dir, cfg.data.dir)  # fail before touching the run directory
    for name in cfg.tasks:
        for split in ("train", "dev"):
            path = get_task(name).path(data_path, split)
            if not path.is_file():
                raise DataError(f"{path}: file not found")
    check_writable(run_dir)
    cfg.data.dir = str(data_path.resolve())  # the saved config names the data it was trained on
    if not resume:
        for stale in ("log.txt", "metrics.jsonl", "best_metrics.json", "grad_cosine.jsonl"):
            (run_dir / stale).unlink(missing_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    return data_path, RunLog(run_dir / "log.txt")


def train(cfg: Config, run_dir: Path, data_dir: str | None = None, parallel: Parallel | None = None) -> dict[str, float]:
    """Train per `cfg` from scratch, writing the run directory; returns the best dev metrics.
    With `parallel` (torchrun), every process trains its share of each batch and rank 0 writes."""
    par = parallel or Parallel()
    if par.main:
        data_path, log = prepare_run_dir(cfg, run_dir, data_dir, resume=False)
        log(f"minbert train: tasks {cfg.tasks}, data {data_path}, run {run_dir}"
            + (f", {par.world} processes" if par.world > 1 else ""))
    par.barrier()
    if not par.main:
        data_path = resolve_data_dir(data_dir, cfg.data.dir)
        cfg.data.dir = str(data_path.resolve())
        log = lambda line: None  # noqa: E731 -- rank 0 logs
    return Trainer(cfg, run_dir, data_path, log, par).run()


def resume(run_dir: Path, new_cfg: Config | None = None, force: bool = False,
           data_dir: str | None = None) -> dict[str, float]:
    """Continue a killed run from RUN_DIR/last; a changed config is refused unless `force`."""
    if not (run_dir / "config.yaml").is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no config.yaml), nothing to resume")
    saved = load_config(run_dir / "config.yaml")
    cfg = saved
    if new_cfg is not None:
        if new_cfg.data.dir is None:  # a config file rarely names the data dir; the run recorded it
            new_cfg.data.dir = saved.data.dir if data_dir is None else str(Path(data_dir).resolve())
        changed = config_differences(saved, new_cfg)
        if changed and not force:
            raise CheckpointError(f"{run_dir}: the config differs from the run's in {', '.join(changed)}; "
                                  "resume with the same config, or add --force")
        cfg = new_cfg
    if data_dir is None:
        data_dir = cfg.data.dir or saved.data.dir
    recover_interrupted_swap(run_dir / "last")
    recover_interrupted_swap(run_dir / "best")
    data_path, log = prepare_run_dir(cfg, run_dir, data_dir, resume=True)
    trainer = Trainer(cfg, run_dir, data_path, log)
    if (run_dir / "last").is_dir():
        trainer.restore(run_dir / "last")
    else:
        log(f"no checkpoint in {run_dir / 'last'} yet: starting the run from the beginning")
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


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())

"""A run's lifecycle around the training loop (trainer.py): `train` and `resume`.

Both first check everything they can without writing (`preflight`, then `check_inputs`, which also pins a
Hub backbone to its commit and the distillation teachers to their weights), then open the run folder
(locked, one writer; an earlier run is refused unless `overwrite`), build the trainer (data and model load,
still writing nothing), and only then replace an earlier run or write config.yaml, the log and the teachers'
outputs.
"""
from __future__ import annotations

import contextlib
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterator

from ..config import config_differences, save_config
from ..schema import Config
from ..tasks import adopt_classes
from ..data.loading import resolve_data_dir
from ..distributed import Parallel
from ..errors import CheckpointError, ConfigError, WriteError
from ..preflight import pin_backbone, preflight, preflight_resume
from ..run_folder import RunFolder
from ..runs import load_run_config
from .distill import Teacher, check_teachers, reuse_identities
from .init_from import check_init, has_checkpoint, pin_init
from .interrupts import StopSignals
from .setup import RunLog, check_writable
from .state import recover_interrupted_swap
from .steplog import require_tensorboard
from .trainer import Trainer


def check_inputs(cfg: Config, data_dir: str | None) -> tuple[Path, Path, dict[str, list[Teacher]]]:
    """What a run settles before its folder is touched, once `preflight` has checked the device, the backbone
    and the data files: TensorBoard when asked for, the data folder (recorded in `cfg.data.dir`, as the saved
    config names it), the backbone folder (a Hub id pinned to its commit in `cfg`, so the saved
    config.yaml, a resume and a re-run use exactly these weights) and the distillation teachers (their
    identities recorded in `cfg`). Writes nothing."""
    if cfg.train.tensorboard:
        require_tensorboard()
    data_path = resolve_data_dir(data_dir, cfg.data.dir)
    folder = pin_backbone(cfg)
    cfg.data.dir = str(data_path.resolve())
    return data_path, folder, check_teachers(cfg, data_path)


def refuse_own_teacher(cfg: Config, run_dir: Path) -> None:
    """A teacher that is the run being written (or a folder inside it) is refused: with --overwrite the new run
    would delete the teacher while its outputs train the student."""
    out = Path(run_dir).resolve()
    for name, folders in (cfg.train.distill.teachers or {}).items():
        for i, folder in enumerate(folders):
            teacher = Path(folder).resolve()
            if teacher == out or out in teacher.parents:
                raise ConfigError(f"train.distill.teachers.{name}[{i}]: {folder} is the run being written ({run_dir}); "
                                  "a run cannot be its own teacher: train the student into another folder (--out)")


def begin_run(folder: RunFolder, cfg: Config, log: RunLog, fresh: bool) -> None:
    """The run has validated: replace an earlier run (overwrite), write config.yaml and the held log lines."""
    check_writable(folder.path)
    if fresh:
        folder.clear_for_new_run()
    save_config(cfg, folder.path / "config.yaml")
    log.start(fresh=fresh)


def train(cfg: Config, run_dir: Path, data_dir: str | None = None, parallel: Parallel | None = None,
          overwrite: bool = False, on_eval: Callable[[int, float], bool] | None = None) -> dict[str, float]:
    """Train per `cfg` from scratch, writing the run directory; returns the best dev metrics.
    A directory that holds a run is refused (RunFolderError) unless `overwrite`, which replaces the earlier
    run once the new one has validated. With `parallel` (torchrun), every process trains its share of
    each batch and rank 0 locks and writes the folder. `on_eval(step, score)` hears each dev evaluation (a true
    answer ends the run there, as an early stop: `minbert sweep`'s pruning)."""

    refuse_own_teacher(cfg, run_dir)
    preflight(cfg, data_dir)  # device, backbone, data: before the run directory is touched
    par = parallel or Parallel()
    data_path, backbone, teachers = check_inputs(cfg, data_dir)  # every rank pins the same cached commit
    init = check_init(cfg)  # a resume starts from its own last/ instead
    with ExitStack() as stack, continue_after_write_failure(run_dir):
        log = lambda line: None  # noqa: E731 -- rank 0 logs
        if par.main:
            folder = stack.enter_context(RunFolder.new_run(run_dir, overwrite))
            log = RunLog(run_dir / "log.txt", hold=True)
            log(f"minbert train: tasks {cfg.tasks}, data {data_path}, run {run_dir}"
                + (f", {par.world} processes" if par.world > 1 else ""))
            for name, spec in (cfg.task_defs or {}).items():
                if name in cfg.tasks and spec.classes_from is not None:  # read by this or an earlier check
                    log(f"task {name}: classes {spec.classes}, read from {spec.classes_from} (declare "
                        f"task_defs.{name}.classes to set them and their order)")
        stop = stack.enter_context(StopSignals(second_sigint_stops=par.world == 1))
        try:
            trainer = Trainer(cfg, run_dir, data_path, log, par, stop, backbone, teachers, init)
        except BaseException:
            if par.main:
                folder.abandon()  # nothing was written: a bad row under data.strict leaves no folder behind
            raise
        trainer.on_eval = on_eval
        if par.main:
            begin_run(folder, cfg, log, fresh=True)
            trainer.teacher_outputs.keep(run_dir)
        par.barrier()
        metrics = trainer.run()
        if par.main:
            trainer.teacher_outputs.tidy(run_dir)
        return metrics


@contextlib.contextmanager
def continue_after_write_failure(run_dir: Path) -> Iterator[None]:
    """A WriteError while a run is written says how to go on once space is freed: with `--resume` when the run
    folder has its config (the run continues from its last complete checkpoint), else by training again."""
    try:
        yield
    except WriteError as e:
        if (run_dir / "config.yaml").is_file():
            raise e.advise(todo=f"once it can be written (free space), continue with: minbert train --resume {run_dir}") from e
        raise e.advise(todo=f"once it can be written (free space), train again (with --overwrite if {run_dir} has "
                            "files of this run)") from e


def resume_config(run_dir: Path, new_cfg: Config | None = None, force: bool = False,
                  data_dir: str | None = None) -> tuple[Config, str | None]:
    """The config and data directory a resume of `run_dir` runs with; a changed config is refused unless `force`."""
    if not (run_dir / "config.yaml").is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no config.yaml), nothing to resume")
    saved = load_run_config(run_dir / "config.yaml")
    cfg = saved
    if new_cfg is not None:
        pin_backbone(new_cfg)  # a Hub id compares by the commit it names now
        reuse_identities(saved, new_cfg)
        pin_init(new_cfg)
        if new_cfg.train.init_identity is None:  # recorded by the run; a config file rarely names it
            new_cfg.train.init_identity = saved.train.init_identity
        if new_cfg.data.dir is None:  # a config file rarely names the data dir; the run recorded it
            new_cfg.data.dir = saved.data.dir if data_dir is None else str(Path(data_dir).resolve())
        adopt_classes(new_cfg.task_defs, saved.task_defs)  # classes the run read from its training split
        changed = config_differences(saved, new_cfg)
        if changed and not force:
            raise CheckpointError(f"{run_dir}: the config differs from the run's in {', '.join(changed)}; "
                                  "resume with the same config, or add --force")
        cfg = new_cfg
    if data_dir is None:
        data_dir = cfg.data.dir or saved.data.dir
    return cfg, data_dir


def resume(run_dir: Path, new_cfg: Config | None = None, force: bool = False,
           data_dir: str | None = None, on_eval: Callable[[int, float], bool] | None = None) -> dict[str, float]:
    """Continue a killed run from RUN_DIR/last; a changed config is refused unless `force`."""

    cfg, data_dir = resume_config(run_dir, new_cfg, force, data_dir)
    preflight_resume(cfg, run_dir, data_dir)  # config, device, backbone, data, last/: before anything changes
    data_path, backbone, teachers = check_inputs(cfg, data_dir)
    init = None if has_checkpoint(run_dir) else check_init(cfg)  # stopped before its first checkpoint: start over
    with continue_after_write_failure(run_dir), RunFolder.lock(run_dir) as folder, StopSignals() as stop:
        recover_interrupted_swap(run_dir / "last")
        recover_interrupted_swap(run_dir / "best")
        log = RunLog(run_dir / "log.txt", hold=True)
        trainer = Trainer(cfg, run_dir, data_path, log, stop=stop, backbone=backbone, teachers=teachers, init=init)
        trainer.on_eval = on_eval
        if (run_dir / "last").is_dir():
            trainer.restore(run_dir / "last")
        else:
            log(f"no checkpoint in {run_dir / 'last'} yet: starting the run from the beginning")
        begin_run(folder, cfg, log, fresh=False)
        trainer.teacher_outputs.keep(run_dir)
        trainer.rewind_logs()
        metrics = trainer.run()
        trainer.teacher_outputs.tidy(run_dir)
        return metrics

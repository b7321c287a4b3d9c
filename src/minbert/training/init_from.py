"""`train.init_from`: a run that starts from a finished run's best weights (the encoder, the heads and their
private layers) instead of the backbone's, e.g. a multi-task run then SST's private layer trained alone on top
of it (`freeze_stages: [{epochs: 1, train: private}]`, `schedule.subset_size` 0 for the other tasks: one model
file, the other tasks' weights untouched).

The finished run is checked against this run's config before anything is written: the same backbone folder
(so the same vocabulary), the same model settings but for `dropout` (the tasks that do not train keep the
finished run's weights and are scored as it scored them), and by its files' headers exactly the weights this
config builds. Its weights' identity is recorded in `train.init_identity`, as a distillation teacher's is: a
start run retrained since is refused, and a recipe trains the run on top of it again.
"""
from __future__ import annotations

from pathlib import Path

from ..backbone import resolve_backbone
from ..config import config_differences
from ..errors import CheckpointError, ConfigError
from ..preflight import check_backbone, check_model_folder
from ..runs import check_run
from ..schema import Config
from .distill import weights_identity

KEY = "train.init_from"
MAY_DIFFER = {"backbone", "dropout"}  # the backbone is compared by its folder


def pin_init(cfg: Config) -> None:
    """`train.init_from` as an absolute path (the saved config names it wherever a resume runs from)."""
    if cfg.train.init_from is not None:
        cfg.train.init_from = str(Path(cfg.train.init_from).expanduser().resolve())


def name_init(cfg: Config) -> None:
    """Put the start run's identity as it is now into `cfg` (a recipe's wanted config), when it has finished."""
    pin_init(cfg)
    best = Path(cfg.train.init_from or "") / "best"
    if cfg.train.init_from is not None and cfg.train.init_identity is None and best.is_dir():
        try:
            cfg.train.init_identity = weights_identity(best)
        except OSError:
            pass


def check_init(cfg: Config) -> Path | None:
    """The checkpoint folder (RUN/best) the run starts from, its run's path made absolute and its weights'
    identity recorded in `cfg`; None without `train.init_from`. A one-line `ConfigError` naming the key when it
    cannot be used."""
    if cfg.train.init_from is None:
        return None
    pin_init(cfg)
    folder = Path(cfg.train.init_from)
    try:
        saved = check_run(folder)
        if resolve_backbone(saved.model.backbone).resolve() != resolve_backbone(cfg.model.backbone).resolve():
            raise ConfigError(f"{folder} was trained from backbone {saved.model.backbone or 'all-MiniLM-L6-v2'}, "
                              f"this run's is {cfg.model.backbone or 'all-MiniLM-L6-v2'} (the vocabulary must be "
                              "the same)")
        differ = [f"model.{k}" for k in config_differences(saved.model, cfg.model) if k.split(".")[0] not in MAY_DIFFER]
        if differ:
            raise ConfigError(f"{folder} has other model settings ({', '.join(differ)}); only model.dropout may "
                              "differ (the tasks not trained keep its weights and are scored as it scored them)")
        if sorted(saved.tasks) != sorted(cfg.tasks):
            raise ConfigError(f"{folder} was trained on {', '.join(saved.tasks)}, this run has {', '.join(cfg.tasks)}")
        for name in cfg.tasks:
            problem = cfg.task(name).output_problem(saved.task(name))
            if problem:
                raise ConfigError(f"{folder}: its task {name} is not this run's ({problem})")
        _, encoder_config = check_backbone(cfg.model.backbone, cfg.model.max_length)
        check_model_folder(cfg, folder / "best", encoder_config)
        identity = weights_identity(folder / "best")
    except (CheckpointError, ConfigError, OSError) as e:
        raise ConfigError(f"{KEY}: {e}") from None
    if cfg.train.init_identity is not None and cfg.train.init_identity != identity:
        raise ConfigError(f"train.init_identity: {folder}'s weights are not the ones this config names "
                          f"({cfg.train.init_identity} named, {identity} now): the run was retrained or replaced")
    cfg.train.init_identity = identity
    return folder / "best"


def has_checkpoint(run_dir: Path) -> bool:
    """A resume of `run_dir` continues from its last checkpoint (else it starts over: from `init_from` too)."""
    return (run_dir / "last").is_dir() or (run_dir / "last.old").is_dir()

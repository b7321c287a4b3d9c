"""`train.init_from`: a run that starts from a finished run's best weights (the encoder, the heads and their
private layers) instead of the backbone's, e.g. a multi-task run then SST's private layer trained alone on top
of it (`freeze_stages: [{epochs: 1, train: private}]`, `schedule.subset_size` 0 for the other tasks: one model
file, the other tasks' weights untouched).

The finished run is checked by its files' headers against this run's config before anything is written: the
same backbone (so the same vocabulary), the same encoder shapes and exactly the heads this config builds.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError, ConfigError
from ..preflight import check_backbone, check_model_folder
from ..runs import check_run
from ..schema import Config

KEY = "train.init_from"


def check_init(cfg: Config) -> Path | None:
    """The checkpoint folder (RUN/best) the run starts from, its run's path made absolute in `cfg`; None
    without `train.init_from`. A one-line `ConfigError` naming the key when it cannot be used."""
    if cfg.train.init_from is None:
        return None
    folder = Path(cfg.train.init_from).expanduser().resolve()
    try:
        saved = check_run(folder)
        if saved.model.backbone != cfg.model.backbone:
            raise ConfigError(f"{folder} was trained from backbone {saved.model.backbone or 'all-MiniLM-L6-v2'}, "
                              f"this run's is {cfg.model.backbone or 'all-MiniLM-L6-v2'} (the vocabulary must be "
                              "the same)")
        _, encoder_config = check_backbone(cfg.model.backbone, cfg.model.max_length)
        check_model_folder(cfg, folder / "best", encoder_config)
    except (CheckpointError, ConfigError) as e:
        raise ConfigError(f"{KEY}: {e}") from None
    cfg.train.init_from = str(folder)
    return folder / "best"

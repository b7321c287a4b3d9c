"""Checks that need the machine or the files, run before anything is created or changed.

config.py validates what a config says; this module checks that it can run here: the device exists
and is usable, the backbone resolves to a folder with a readable config.json, weights that fit it and
a vocabulary (and `model.max_length` fits its position embeddings), and every data file the run will
read is present, readable, UTF-8 and has the right header. `minbert train --check` prints the
summary; `train`, `--resume`, `pretrain-mlm`, `sweep` and `ablate` call it before their first run.
Each failure is one `ConfigError` / `CheckpointError` / `DataError` line naming the key or the file.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .tasks import get_task, resolve_classes
from .errors import ConfigError, DataError, CheckpointError
from .backbone import locate_backbone, resolve_backbone, safetensors_shapes
from .schema import MIN_MAX_LENGTH, Config, check_heads
from .data.loading import resolve_data_dir
from .data.readers import read_text
from .encoder import BertConfig, BertModel
from .heads.task_head import check_private_layers
from .tokenizer import Tokenizer


def check_device(name: str, key: str = "train.device") -> torch.device:
    """The device a run will use; `cuda` without CUDA, a missing `cuda:N` or an unusable GPU is a `ConfigError`."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"{key}: {name!r} is not a device torch knows ({str(e).splitlines()[0]})") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ConfigError(f"{key}: {name!r} is not auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        build = "a CPU-only build of torch" if torch.version.cuda is None else "no CUDA device is visible"
        raise ConfigError(f"{key}: {name} asked for, but CUDA is not available here ({build}); "
                          "use train.device=cpu or auto")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ConfigError(f"{key}: {name} asked for, but this machine has {count} CUDA device(s) "
                          f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})")
    try:
        torch.zeros(1, device=device)
    except RuntimeError as e:
        raise ConfigError(f"{key}: {name} is not usable ({str(e).splitlines()[0]})") from None
    return device


def check_tensors(path: Path, expected: dict[str, tuple[int, ...]], prefix: str = "") -> None:
    """A safetensors file holds every expected tensor (keys may carry `prefix`) with the expected shape."""
    found = {k[len(prefix):] if prefix and k.startswith(prefix) else k: s for k, s in safetensors_shapes(path).items()}
    missing = sorted(set(expected) - set(found))
    if missing:
        raise CheckpointError(f"{path}: {len(missing)} tensor(s) missing, e.g. {missing[:3]}")
    for name, shape in expected.items():
        if found[name] != shape:
            raise CheckpointError(f"{path}: tensor {name} has shape {found[name]}, expected {shape}")


def pin_backbone(cfg: Config) -> Path:
    """Resolve cfg.model.backbone once: a Hub id becomes `org/name@commit` in cfg (so the saved config.yaml, a
    resume and a re-run use exactly these weights, and a later lookup is a cache hit); returns the local folder."""
    try:
        located = locate_backbone(cfg.model.backbone)
    except CheckpointError as e:
        raise CheckpointError(f"model.backbone: {e}") from None
    cfg.model.backbone = located.spec
    return located.folder


def check_backbone(source: str | None, max_length: int, key: str | None = "model.backbone",
                   length_key: str = "model.max_length") -> tuple[Path, BertConfig]:
    """The backbone folder: config.json readable, weights present and of its shapes, a vocabulary the
    tokenizer reads (no larger than the embedding table); `max_length` within its position embeddings.
    Errors name `key` (None: the file alone, for a run's own checkpoint folder)."""
    try:
        folder = resolve_backbone(source)
        if not (folder / "config.json").is_file():
            raise CheckpointError(f"{folder}: no config.json (is this a BERT checkpoint folder?)")
        config = BertConfig.from_json_file(folder / "config.json")
        st, legacy = folder / "model.safetensors", folder / "pytorch_model.bin"
        if st.is_file():
            check_tensors(st, BertModel.parameter_shapes(config), prefix="bert.")
        elif not legacy.is_file():
            raise CheckpointError(f"{folder}: neither model.safetensors nor pytorch_model.bin found")
        tokenizer = Tokenizer.from_pretrained(folder, max_length=max(max_length, MIN_MAX_LENGTH))
        if tokenizer.vocab_size > config.vocab_size:
            raise CheckpointError(f"{tokenizer.vocab_file}: {tokenizer.vocab_size} tokens, more than the "
                                  f"{config.vocab_size} rows of the word embeddings (vocab_size in config.json)")
    except CheckpointError as e:
        if key is None:
            raise
        raise CheckpointError(f"{key}: {e}") from None
    if max_length > config.max_position_embeddings:
        raise ConfigError(f"{length_key}: {max_length} is more than the backbone's {config.max_position_embeddings} "
                          f"positions (max_position_embeddings in {folder / 'config.json'})")
    return folder, config


def data_splits(cfg: Config) -> list[str]:
    """The splits a training run reads: train and dev, and test when it writes test predictions."""
    return ["train", "dev"] + (["test"] if cfg.eval.test_predictions else [])


def check_data(cfg: Config, data_dir: str | None, splits: list[str] | None = None) -> tuple[Path, int]:
    """The data directory and the number of files checked: every task's files present, UTF-8, right header."""
    try:
        data_path = resolve_data_dir(data_dir, cfg.data.dir)
    except DataError as e:
        raise DataError(f"data.dir: {e}" if data_dir is None and cfg.data.dir else str(e)) from None
    files = 0
    for name in cfg.tasks:
        task = cfg.task(name)
        for split in splits or data_splits(cfg):
            if split == "test" and not task.has_split(split):
                continue  # a task may have no test split
            task.check_file(data_path, split)
            files += 1
    return data_path, files


def check_declared_test_rows(cfg: Config, data_path: Path) -> None:
    """A declared task's test split is read only after training: read it now (a bad row under data.strict, or no
    usable row, fails here, before the run folder exists). The catalogues' files are checked by their headers."""
    if not cfg.eval.test_predictions:
        return
    for name in cfg.tasks:
        task = cfg.task(name)
        if name in (cfg.task_defs or {}) and task.has_split("test"):
            rows, report = task.read(data_path, "test", cfg.data.strict)
            if not rows:
                raise DataError(f"{report.file}: no usable rows")


def preflight(cfg: Config, data_dir: str | None = None) -> dict:
    """Everything a training run needs from this machine and its files; a summary when all is well."""
    device = check_device(cfg.train.device)
    pin_backbone(cfg)  # a Hub id resolved once, here: what is checked is the commit the run will load
    folder, config = check_backbone(cfg.model.backbone, cfg.model.max_length)
    for task in cfg.tasks:
        own = "private_layers" in (cfg.model.heads or {}).get(task, {})
        check_private_layers(task, cfg.model.head_config(task), config,
                             f"model.heads.{task}.private_layers" if own else "model.private_layers")
    data_path, files = check_data(cfg, data_dir)
    read_classes = resolve_classes({t: s for t, s in (cfg.task_defs or {}).items() if t in cfg.tasks}, data_path)
    check_heads(cfg)  # again, now that every task's number of classes is known
    check_declared_test_rows(cfg, data_path)
    summary = {"ok": True, "tasks": list(cfg.tasks), "device": str(device), "backbone": str(folder),
               "max_length": cfg.model.max_length, "max_position_embeddings": config.max_position_embeddings,
               "data_dir": str(data_path), "data_files": files}
    return {**summary, "classes_read": read_classes} if read_classes else summary


def preflight_mlm(cfg, data_dir: str | None = None) -> None:
    """`pretrain-mlm`: the backbone, the sources' training files and the text files."""
    check_backbone(cfg.backbone, cfg.max_length, key="backbone", length_key="max_length")
    if cfg.sources:
        try:
            data_path = resolve_data_dir(data_dir, cfg.data_dir)
        except DataError as e:
            raise DataError(f"data_dir: {e}" if data_dir is None and cfg.data_dir else str(e)) from None
        for name in cfg.sources:
            get_task(name).check_file(data_path, "train")
    for path in cfg.text_files or []:
        read_text(Path(path))


def check_model_folder(cfg: Config, folder: Path, encoder_config: BertConfig) -> None:
    """A saved model folder (`best/`, `last/`) holds an encoder of `encoder_config`'s shapes and the heads
    `cfg` builds, by the safetensors headers (a truncated file fails here too)."""
    from .model import build_heads

    check_tensors(folder / "model.safetensors", BertModel.parameter_shapes(encoder_config), prefix="bert.")
    with torch.device("meta"):  # shapes only: no memory, no random init drawn from the caller's stream
        heads = build_heads(encoder_config, {t: cfg.task(t) for t in cfg.tasks}, {t: cfg.model.head_config(t) for t in cfg.tasks},
                            cfg.model.shared_heads)
    expected = {k: tuple(v.shape) for k, v in heads.state_dict().items()}
    check_tensors(folder / "heads.safetensors", expected)
    unexpected = sorted(set(safetensors_shapes(folder / "heads.safetensors")) - set(expected))
    if unexpected:
        raise CheckpointError(f"{folder / 'heads.safetensors'}: tensor(s) the config's heads do not have, "
                              f"e.g. {unexpected[:3]}")


def preflight_resume(cfg: Config, run_dir: Path, data_dir: str | None = None) -> dict:
    """`train --resume`: `preflight`, then the run's `last/` checkpoint (weights and heads of the config's
    shapes, a trainer state minbert wrote) and its `best/` weights and heads, which the run reloads at the end."""
    from .training.state import read_trainer_state

    summary = preflight(cfg, data_dir)
    last = run_dir / "last"
    if not last.is_dir() and (run_dir / "last.old").is_dir():
        last = run_dir / "last.old"  # a kill between the two renames of a save; resume puts it back
    _, encoder_config = check_backbone(cfg.model.backbone, cfg.model.max_length)
    if last.is_dir():
        check_model_folder(cfg, last, encoder_config)
        read_trainer_state(last)
    best = run_dir / "best" if (run_dir / "best").is_dir() else run_dir / "best.old"
    if best.is_dir():
        check_model_folder(cfg, best, encoder_config)
    return {**summary, "resume_from": str(last) if last.is_dir() else None}

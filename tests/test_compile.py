"""`train.compile`: the compiled encoder computes what the eager one does, and its checkpoint keeps HF key names."""
import pytest
import torch
from safetensors.torch import load_file

from minbert.schema import load_config
from minbert.training.setup import RunLog
from minbert.training.run import check_inputs
from minbert.training.trainer import Trainer


def test_compiled_encoder_matches_eager_and_saves_plain_keys(tmp_path, tiny_backbone, small_data_dir):
    cfg = load_config(None, [f"model.backbone={tiny_backbone}", "train.compile=true", "model.dropout=0.0",
                             "train.threads=1", "eval.test_predictions=false"])
    data_path, _, _ = check_inputs(cfg, str(small_data_dir))
    trainer = Trainer(cfg, tmp_path, data_path, RunLog(tmp_path / "log.txt"))
    enc = trainer.model.encoder.eval()
    x = trainer.tokenizer(["A man plays a guitar.", "Cats sleep."])
    try:
        compiled = enc(x["input_ids"], x["attention_mask"], x["token_type_ids"]).last_hidden_state
    except Exception as e:  # no working C++ toolchain for inductor here
        pytest.skip(f"torch.compile unavailable: {type(e).__name__}")
    with torch.no_grad():
        want = enc.forward(x["input_ids"], x["attention_mask"], x["token_type_ids"]).last_hidden_state  # not compiled
    assert torch.allclose(compiled, want, atol=1e-5)
    trainer.save_model(tmp_path / "ckpt")
    keys = load_file(str(tmp_path / "ckpt" / "model.safetensors")).keys()
    assert "embeddings.word_embeddings.weight" in keys and not any("_orig_mod" in k for k in keys)

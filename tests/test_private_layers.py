"""`private_layers`: a head's own copy of the encoder's top layers. Checked against transformers' BertModel (the
copy starts as the layer it copies), by where gradients flow (a task's loss moves its private layers and no
other task's, and never the shared layer it replaces), by the optimizer's groups, and end to end: a run
trains, saves and reloads them, and a count the backbone cannot give is a one-line error before any run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minbert import MultitaskModel, Tokenizer
from minbert.heads.settings import HeadSettings as HeadConfig
from minbert.schema import load_config
from minbert.encoder import BertModel
from minbert.optim import parameter_groups

REPO = Path(__file__).resolve().parents[1]
SENTENCES = ["A man plays a guitar.", "Cats sleep on the warm sofa all afternoon."]


@pytest.fixture
def parts(tiny_backbone):
    torch.manual_seed(0)
    encoder = BertModel.from_pretrained(tiny_backbone)
    model = MultitaskModel(encoder, ["sst", "sts"], {"sst": HeadConfig(private_layers=1, dropout=0.0),
                                                     "sts": HeadConfig(pair_encoding="siamese", similarity="cosine")})
    return model, Tokenizer.from_pretrained(tiny_backbone)


def test_a_private_layer_starts_as_the_top_layer_it_copies(parts, tiny_backbone):
    transformers = pytest.importorskip("transformers")
    model, tok = parts
    model.eval()
    x = tok(SENTENCES)
    reference = transformers.BertModel.from_pretrained(tiny_backbone, add_pooling_layer=False).eval()
    with torch.no_grad():
        hidden = reference(input_ids=x["input_ids"], attention_mask=x["attention_mask"],
                           token_type_ids=x["token_type_ids"]).last_hidden_state
        mask = x["attention_mask"].unsqueeze(-1).float()
        expected = model.heads["sst"].out((hidden * mask).sum(1) / mask.sum(1))
        assert torch.allclose(model("sst", [x]), expected, atol=1e-5)


def test_a_tasks_loss_moves_its_own_private_layers_and_never_the_shared_layer_they_replace(parts):
    model, tok = parts
    model.train()
    top, below = model.encoder.encoder.layer[-1], model.encoder.encoder.layer[0]
    model.loss("sst", model.outputs("sst", [tok(SENTENCES)]), torch.tensor([0, 4])).backward()
    assert all(p.grad is None for p in top.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.heads["sst"].private.parameters())
    assert below.attention.self.query.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    pair = [tok(["A man plays a guitar."]), tok(["Someone plays music."])]
    model.loss("sts", model.outputs("sts", pair), torch.tensor([4.0])).backward()
    assert all(p.grad is None for p in model.heads["sst"].private.parameters())
    assert top.attention.self.query.weight.grad.abs().sum() > 0


def test_private_layers_learn_at_the_encoders_rate(parts):
    model, _ = parts
    cfg = load_config(None, ["tasks=[sst, sts]", "train.lr=2e-5", "train.head_lr=1e-3"])
    groups = parameter_groups(model, cfg)
    private = {id(p) for p in model.heads["sst"].private.parameters()}
    rates = {g["name"]: g["lr"] for g in groups}
    assert rates["private:sst"] == 2e-5 and rates["head:sst"] == 1e-3
    assert {id(p) for g in groups if g["name"] == "private:sst" for p in g["params"]} == private
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_a_run_with_a_private_layer_trains_saves_and_reloads(tmp_path, tiny_backbone, small_data_dir):
    run = tmp_path / "run"
    common = [sys.executable, "-m", "minbert"]
    sets = ["--set", f"model.backbone={tiny_backbone}", "--set", "tasks=[sst, sts]", "--set", "train.epochs=1",
            "--set", "train.schedule.until=fixed_steps", "--set", "train.schedule.steps_per_epoch=4",
            "--set", "train.batch_size={sst: 4, sts: 4}", "--set", "model.heads={sst: {private_layers: 1}}",
            "--set", "eval.test_predictions=false", "--data-dir", str(small_data_dir)]
    done = subprocess.run([*common, "train", "--out", str(run), *sets], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    from safetensors import safe_open
    with safe_open(str(run / "best" / "heads.safetensors"), "pt") as f:
        assert any(k.startswith("sst.private.0.") for k in f.keys())
    best = json.loads((run / "best_metrics.json").read_text())
    again = subprocess.run([*common, "evaluate", str(run), "--data-dir", str(small_data_dir), "--out",
                            str(tmp_path / "eval")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    metrics = json.loads(again.stdout)["metrics"]
    assert metrics["sst"] == pytest.approx(best["sst"]) and metrics["sts"] == pytest.approx(best["sts"], abs=1e-6)

    too_many = subprocess.run([*common, "train", "--check", "--out", str(tmp_path / "no"), *sets,
                               "--set", "model.heads={sst: {private_layers: 2}}"],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
    assert too_many.returncode == 2 and not (tmp_path / "no").exists()
    assert too_many.stderr.strip() == ("minbert: error: model.heads.sst.private_layers: 2 leaves no shared layer "
                                       "of the backbone's 2 (the head of task sst)")
    model_wide = subprocess.run([*common, "train", "--check", "--out", str(tmp_path / "no"), *sets,
                                 "--set", "model.private_layers=3"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert model_wide.returncode == 2 and model_wide.stderr.startswith("minbert: error: model.private_layers: 3 ")


def test_layer_decay_gives_each_depth_its_closed_form_rate_and_adamw_steps_by_it(parts):
    """lr * d^depth per group; AdamW's first step moves an undecayed parameter by its group's rate (m / sqrt(v)
    is the gradient's sign on the first step), so the embeddings' LayerNorm bias moves by lr * d^L."""
    from minbert.optim import build_optimizer
    model, tok = parts
    cfg = load_config(None, ["tasks=[sst, sts]", "train.lr=1e-3", "train.head_lr=1e-2", "train.layer_decay=0.5"])
    groups = parameter_groups(model, cfg)
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert len(rate) == sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    enc, (bottom, top) = model.encoder, model.encoder.encoder.layer  # the tiny backbone has 2 layers
    expected = [(enc.embeddings, 1e-3 * 0.25), (bottom, 1e-3 * 0.5), (top, 1e-3), (enc.pooler, 1e-3),
                (model.heads["sst"].private, 1e-3), (model.heads["sst"].out, 1e-2), (model.heads["sts"], 1e-2)]
    for module, lr in expected:
        assert all(rate[id(p)] == pytest.approx(lr) for p in module.parameters()), module

    optimizer = build_optimizer("adamw", groups, lr=1e-3)
    bias = enc.embeddings.LayerNorm.bias
    before = bias.detach().clone()
    model.train()
    model.loss("sst", model.outputs("sst", [tok(SENTENCES)]), torch.tensor([0, 4])).backward()
    moved = bias.grad.abs() > 1e-6
    optimizer.step()
    assert torch.allclose((bias.detach() - before).abs()[moved], torch.full((int(moved.sum()),), 2.5e-4), rtol=1e-2)

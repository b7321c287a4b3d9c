"""`minbert bench`: the FLOP formula against torch's own FLOP counter, padding shares against a direct
count, and the whole command end to end on a tiny BERT (figures are measured, so only their shape is checked)."""
import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from minbert import BertModel
from minbert.tools.bench import encoder_flops, pad_share
from minbert.cli import main


def test_encoder_flops_match_torch_flop_counter(tiny_backbone):
    model = BertModel.from_pretrained(tiny_backbone).eval()
    ids = torch.randint(1000, 2000, (3, 11))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.encoder(model.embeddings(ids, torch.zeros_like(ids)), None)
    linear = counter.get_total_flops()  # the counter does not see inside CPU SDPA: count attention apart
    h, heads, layers = model.config.hidden_size, model.config.num_attention_heads, model.config.num_hidden_layers
    q = torch.randn(3, heads, 11, h // heads)
    with FlopCounterMode(display=False) as attention:
        (q @ q.transpose(-1, -2)) @ q  # scores, then scores x values
    assert encoder_flops(model.config, [(3, 11)]) == linear + layers * attention.get_total_flops()


def test_pad_share_counts_pad_tokens():
    lengths = [2, 4, 4, 8]
    assert pad_share(lengths, [[0, 1], [2, 3]]) == pytest.approx(1 - 18 / (2 * 4 + 2 * 8))
    assert pad_share(lengths, [[1, 2], [0], [3]]) == 0.0


def test_bench_runs_every_part(tmp_path, tiny_backbone, capsys):
    pytest.importorskip("transformers")
    out = tmp_path / "bench.json"
    assert main(["bench", "--backbone", str(tiny_backbone), "--lengths", "8", "--batch", "4", "--reps", "1",
                 "--runs", str(tmp_path / "runs"), "--json", str(out), "--threads", "1"]) == 0
    result = json.loads(out.read_text())
    assert set(result) == {"encoder", "matmul", "padding", "combine", "mtl", "tasks", "optimizer", "predict",
                           "predict_file", "train"}
    assert [r["task"] for r in result["tasks"]] == ["sst (catalogue)", "my_sst (declared in task_defs)"]
    assert result["tasks"][0]["ratio"] == 1.0 and result["tasks"][1]["ratio"] > 0
    from minbert.combine import COMBINERS
    assert [r["method"] for r in result["mtl"]] == list(COMBINERS) and all(r["ratio"] > 0 for r in result["mtl"])
    assert result["mtl"][0]["ratio"] == 1.0 and {r["method"] for r in result["mtl"] if r["gram"]} >= {"upgrad", "pcgrad"}
    assert result["encoder"][0]["fwd+bwd ratio"] > 0 and result["matmul"][0]["fp32 matmul FLOP/s (2048^3)"] > 0
    assert [r["variant"] for r in result["combine"]] == ["sum", "pcgrad", "smart (T=1)", "smart steps=0 (R3F)",
                                                           "distilled (BAM!)"]
    assert 0 < result["combine"][0]["share of matmul FLOP/s"] < 1.5
    for row in result["padding"]:
        assert 0 <= row["bucketed pad share"] < row["random pad share"] < 1
    assert {r["task"] for r in result["predict"]} == {"sst", "para"} and all(r["ratio"] > 0 for r in result["predict"])
    assert all(r["minbert ex/s"] > 0 and r["hf ex/s"] > 0 for r in result["train"])
    assert result["predict_file"][0]["minbert rows/s"] > 0 and result["predict_file"][0]["pipeline rows/s"] > 0
    assert len(result["optimizer"]) == 4 and all(r["ms/step"] > 0 for r in result["optimizer"])
    assert "## combine" in capsys.readouterr().err

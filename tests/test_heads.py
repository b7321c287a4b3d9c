"""Pooling and pair encodings: padding never changes a pooled vector; feature widths; metrics."""
import numpy as np
import pytest
import torch

from minbert import BertModel, MultitaskModel, Tokenizer
from minbert.heads import POOLING
from minbert.tasks import TASKS, overall_score


@pytest.mark.parametrize("name", sorted(POOLING))
def test_padding_does_not_change_pooled_vector(name):
    torch.manual_seed(0)
    hidden = torch.randn(1, 4, 6)
    mask = torch.ones(1, 4, dtype=torch.long)
    padded = torch.cat([hidden, torch.full((1, 3, 6), 1e3)], 1)  # huge values in the padding
    padded_mask = torch.cat([mask, torch.zeros(1, 3, dtype=torch.long)], 1)
    assert torch.allclose(POOLING[name](hidden, mask), POOLING[name](padded, padded_mask))


def test_pooling_definitions():
    hidden = torch.tensor([[[1.0, 5.0], [3.0, -1.0], [9.0, 9.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert POOLING["cls"](hidden, mask).tolist() == [[1.0, 5.0]]
    assert POOLING["mean"](hidden, mask).tolist() == [[2.0, 2.0]]
    assert POOLING["max"](hidden, mask).tolist() == [[3.0, 5.0]]


@pytest.mark.parametrize("pair_encoding,width", [("cross", 1), ("siamese", 3)])
def test_pair_encodings(tiny_backbone, pair_encoding, width):
    torch.manual_seed(0)
    enc = BertModel.from_pretrained(tiny_backbone)
    model = MultitaskModel(enc, ["sst", "para", "sts"], "mean", pair_encoding, 0.0).eval()
    tok = Tokenizer.from_pretrained(tiny_backbone)
    assert model.heads["sts"].out.in_features == width * 32 and model.heads["sst"].out.in_features == 32
    a, b = ["A man plays a guitar.", "Cats sleep."], ["Someone plays music.", "Dogs bark loudly."]
    inputs = [tok(a, b)] if model.joint_input("sts") else [tok(a), tok(b)]
    scores = model("sts", inputs)
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 5)).all()
    if pair_encoding == "siamese":  # features (u, v, |u-v|): swapping the pair swaps u and v, keeps |u-v|
        feats = model.heads["sts"].features(enc, [tok(a), tok(b)])
        swapped = model.heads["sts"].features(enc, [tok(b), tok(a)])
        assert torch.allclose(feats[:, 64:], (feats[:, :32] - feats[:, 32:64]).abs())
        assert torch.allclose(feats[:, :32], swapped[:, 32:64], atol=1e-6)
        assert torch.allclose(feats[:, 64:], swapped[:, 64:], atol=1e-6)


def test_metrics_and_overall_score():
    pred, gold = np.array([0.1, 0.5, 0.2, 0.9]), np.array([1.0, 2.0, 1.5, 4.0])
    assert TASKS["sts"].metric(pred, gold) == pytest.approx(np.corrcoef(pred, gold)[0, 1])
    assert TASKS["sst"].metric(np.array([1, 2, 3]), np.array([1, 2, 0])) == pytest.approx(2 / 3)
    assert overall_score({"sst": 0.5, "para": 0.8, "sts": 0.6}) == pytest.approx((0.5 + 0.8 + 0.8) / 3)
    assert overall_score({"sst": 0.5}) is None

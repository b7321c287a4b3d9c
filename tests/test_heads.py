"""Heads: pooling, pair features, CNN, MLP, cosine heads, shared heads and losses, each checked against an
independent computation (torch's own CosineEmbeddingLoss, a loop over pairs for CoSENT, a hand-run encoder)."""
import itertools
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minbert import BertModel, MultitaskModel, Tokenizer
from minbert.errors import ConfigError
from minbert.heads.settings import HeadSettings as HeadConfig
from minbert.schema import load_config
from minbert.heads import POOLING, HeadOutput, build_head
from minbert.losses import LOSSES
from minbert.tasks import COURSE_TASKS, overall_score


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
    assert POOLING["cls+mean"](hidden, mask).tolist() == [[1.0, 5.0, 2.0, 2.0]]


@pytest.fixture(scope="module")
def parts(tiny_backbone):
    torch.manual_seed(0)
    return BertModel.from_pretrained(tiny_backbone).eval(), Tokenizer.from_pretrained(tiny_backbone)


A, B = ["A man plays a guitar.", "Cats sleep."], ["Someone plays music.", "Dogs bark loudly at night."]


def pair_inputs(model, task, tok, a=A, b=B):
    return [tok(a, b)] if model.joint_input(task) else [tok(a), tok(b)]


def mean_vectors(enc, tok, sentences):
    x = tok(sentences)
    hidden = enc(x["input_ids"], x["attention_mask"], x["token_type_ids"]).last_hidden_state
    m = x["attention_mask"].unsqueeze(-1).float()
    return (hidden * m).sum(1) / m.sum(1)


@pytest.mark.parametrize("features,width", [(["u", "v"], 2), (["u", "v", "abs_diff"], 3),
                                            (["u", "v", "abs_diff", "product"], 4)])
def test_siamese_feature_sets(parts, features, width):
    enc, tok = parts
    model = MultitaskModel(enc, ["sst", "sts"], HeadConfig(pair_encoding="siamese", features=features, dropout=0.0))
    assert model.heads["sts"].out.in_features == width * 32 and model.heads["sst"].out.in_features == 32
    feats = model.head("sts").features(enc, [tok(A), tok(B)])
    u, v = mean_vectors(enc, tok, A), mean_vectors(enc, tok, B)
    want = torch.cat([{"u": u, "v": v, "abs_diff": (u - v).abs(), "product": u * v}[f] for f in features], -1)
    assert torch.allclose(feats, want, atol=1e-5)
    scores = model("sts", [tok(A), tok(B)])
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 5)).all()


def test_symmetric_features_make_a_symmetric_siamese_head(parts):
    enc, tok = parts
    model = MultitaskModel(enc, ["sts"], HeadConfig(pair_encoding="siamese", features=["abs_diff", "product"]))
    model.eval()
    assert torch.allclose(model("sts", [tok(A), tok(B)]), model("sts", [tok(B), tok(A)]), atol=1e-6)


def test_cross_encoder_reads_one_joint_input(parts):
    enc, tok = parts
    model = MultitaskModel(enc, ["para"], HeadConfig(pair_encoding="cross", pooling="cls+mean"))
    assert model.joint_input("para") and model.heads["para"].out.in_features == 64
    assert model("para", [tok(A, B)]).shape == (2,)


@pytest.mark.parametrize("scale", ["relu", "shift"])
def test_cosine_head_is_the_scaled_cosine_of_the_sentence_vectors(parts, scale):
    enc, tok = parts
    model = MultitaskModel(enc, ["sts"], HeadConfig(pair_encoding="siamese", similarity="cosine", cosine_scale=scale))
    a, b = A + ["The cat sat."], ["A bird sings.", "Cats sleep.", "The cat sat."]
    got = model("sts", [tok(a), tok(b)])
    cos = F.cosine_similarity(mean_vectors(enc, tok, a), mean_vectors(enc, tok, b))
    want = 5 * cos.clamp(min=0) if scale == "relu" else (cos + 1) * 2.5
    assert torch.allclose(got, want, atol=1e-5)
    assert ((got >= 0) & (got <= 5)).all() and float(got[2].detach()) == pytest.approx(5.0, abs=1e-4)  # identical


def test_projected_cosine_head_learns_a_projection(parts):
    enc, tok = parts
    model = MultitaskModel(enc, ["sts"], HeadConfig(pair_encoding="siamese", similarity="cosine", projection=16))
    proj = model.heads["sts"].projection
    assert proj.out_features == 16
    got = model("sts", [tok(A), tok(B)])
    cos = F.cosine_similarity(proj(mean_vectors(enc, tok, A)), proj(mean_vectors(enc, tok, B)))
    assert torch.allclose(got, 5 * cos.clamp(min=0), atol=1e-5)


@pytest.mark.parametrize("kernel", [1, 3])
def test_residual_cnn_with_zero_weights_is_no_cnn(parts, kernel):
    enc, tok = parts
    torch.manual_seed(1)
    plain = build_head(enc.config, COURSE_TASKS["sst"], HeadConfig(dropout=0.0))
    torch.manual_seed(1)
    with_cnn = build_head(enc.config, COURSE_TASKS["sst"], HeadConfig(dropout=0.0, cnn_kernel=kernel, cnn_residual=True))
    with_cnn.out.load_state_dict(plain.out.state_dict())
    x = [tok(A)]
    assert not torch.allclose(with_cnn(enc, x).value, plain(enc, x).value)  # random conv weights change the output
    torch.nn.init.zeros_(with_cnn.cnn.conv.weight)
    torch.nn.init.zeros_(with_cnn.cnn.conv.bias)
    assert torch.allclose(with_cnn(enc, x).value, plain(enc, x).value, atol=1e-6)


@pytest.mark.parametrize("residual", [False, True])
def test_cnn_ignores_padding(parts, residual):
    enc, tok = parts
    head = build_head(enc.config, COURSE_TASKS["sst"], HeadConfig(dropout=0.0, cnn_kernel=3, cnn_residual=residual, pooling="max"))
    alone = head(enc, [tok(["Cats sleep."])]).value
    padded = head(enc, [tok(["Cats sleep.", "A much longer sentence that forces padding onto the first."])]).value
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


def test_mlp_head_layers_and_widths(parts):
    enc, tok = parts
    head = build_head(enc.config, COURSE_TASKS["sst"], HeadConfig(mlp_layers=2, mlp_hidden=24, dropout=0.3))
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32, 24), (24, 24)]
    assert head.out.in_features == 24 and head(enc, [tok(A)]).value.shape == (2, 5)
    assert all(m.p == 0.3 for m in head.mlp if isinstance(m, torch.nn.Dropout))


def test_shared_pair_head(parts):
    enc, tok = parts
    model = MultitaskModel(enc, ["sst", "para", "sts"], HeadConfig(pair_encoding="siamese"), shared=["para", "sts"])
    model.eval()
    assert set(model.heads) == {"sst", "para"} and model.head("sts") is model.head("para")
    x = [tok(A), tok(B)]
    assert torch.allclose(model("sts", x), torch.sigmoid(model("para", x)) * 5, atol=1e-5)


def test_cosent_matches_its_definition():
    torch.manual_seed(0)
    scores, gold = torch.rand(6) * 5, torch.tensor([0.0, 1.2, 3.0, 3.0, 4.8, 2.2])
    s = (scores / 5 * 20).tolist()
    terms = [np.exp(s[j] - s[i]) for i, j in itertools.permutations(range(6), 2) if gold[i] > gold[j]]
    want = np.log(1 + sum(terms))
    got = LOSSES["cosent"].fn(HeadOutput(scores), gold, COURSE_TASKS["sts"])
    assert float(got) == pytest.approx(want, rel=1e-5)
    perfect = LOSSES["cosent"].fn(HeadOutput(gold * 1.0), gold, COURSE_TASKS["sts"])  # right order: loss below a wrong order's
    assert float(perfect) < float(LOSSES["cosent"].fn(HeadOutput(5 - gold), gold, COURSE_TASKS["sts"]))


def test_ce_emd_matches_its_definition_and_charges_a_far_class_more():
    """Cross-entropy + squared EMD over SST's ordered classes, against numpy; of two predictions with the same
    probability on the gold class, the one whose other mass sits farther from it costs more (CE alone: equal)."""
    torch.manual_seed(0)
    logits, gold = torch.randn(4, 5), torch.tensor([0, 2, 4, 1])
    p = np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(1, keepdims=True)
    cdf_gold = (np.arange(5)[None, :] >= gold.numpy()[:, None]).astype(float)
    want = np.mean(-np.log(p[np.arange(4), gold.numpy()])) + np.mean(((p.cumsum(1) - cdf_gold) ** 2).sum(1))
    assert float(LOSSES["ce_emd"].fn(HeadOutput(logits), gold, COURSE_TASKS["sst"])) == pytest.approx(want, rel=1e-5)
    near, far = torch.log(torch.tensor([[0.05, 0.05, 0.2, 0.6, 0.1]])), torch.log(torch.tensor([[0.6, 0.05, 0.2, 0.05, 0.1]]))
    gold = torch.tensor([2])
    ce = [float(LOSSES["ce"].fn(HeadOutput(x), gold, COURSE_TASKS["sst"])) for x in (near, far)]
    emd = [float(LOSSES["ce_emd"].fn(HeadOutput(x), gold, COURSE_TASKS["sst"])) for x in (near, far)]
    assert ce[0] == pytest.approx(ce[1]) and emd[0] < emd[1]
    assert LOSSES["ce_emd"].kinds == ("classify",)  # SST (and CFIMDB); not the pair tasks


def test_ce_smooth_is_cross_entropy_against_the_smoothed_gold_distribution():
    """Label smoothing against numpy: the target puts 1 - eps + eps / K on the gold class and eps / K on each
    other; the loss is the cross-entropy against that target, whose minimum is at the target, not a one-hot."""
    torch.manual_seed(0)
    logits, gold, eps, k = torch.randn(4, 5), torch.tensor([0, 2, 4, 1]), 0.1, 5
    logp = logits.numpy() - np.log(np.exp(logits.numpy()).sum(1, keepdims=True))
    target = np.full((4, k), eps / k)
    target[np.arange(4), gold.numpy()] += 1 - eps
    want = np.mean(-(target * logp).sum(1))
    assert float(LOSSES["ce_smooth"].fn(HeadOutput(logits), gold, COURSE_TASKS["sst"])) == pytest.approx(want, rel=1e-5)
    at_target = torch.log(torch.tensor(target[:1], dtype=torch.float32))
    sharper = torch.log(torch.tensor([[0.99, 0.0025, 0.0025, 0.0025, 0.0025]]))
    loss = [float(LOSSES["ce_smooth"].fn(HeadOutput(x), gold[:1], COURSE_TASKS["sst"])) for x in (at_target, sharper)]
    assert loss[0] < loss[1]  # plain cross-entropy would prefer the sharper one
    assert LOSSES["ce_smooth"].kinds == ("classify",)


@pytest.mark.parametrize("task", ["para", "sts"])
def test_cosine_embedding_loss_matches_torch(parts, task):
    enc, tok = parts
    cfg = HeadConfig(pair_encoding="siamese", similarity="cosine", cosine_scale="shift", loss="cosine_embedding")
    model = MultitaskModel(enc, [task], cfg)
    a, b = A + ["The cat sat."], ["A bird sings.", "Cats sleep.", "The cat sat."]
    gold = torch.tensor([1.0, 0.0, 1.0]) if task == "para" else torch.tensor([4.0, 1.0, 2.5])
    got = model.loss(task, model.outputs(task, [tok(a), tok(b)]), gold)
    target = torch.tensor([1.0, -1.0, 1.0])
    want = torch.nn.CosineEmbeddingLoss()(mean_vectors(enc, tok, a), mean_vectors(enc, tok, b), target)
    assert float(got.detach()) == pytest.approx(float(want.detach()), abs=1e-5)


@pytest.mark.parametrize("override,message", [
    ({"sts": {"similarity": "cosine"}}, "similarity: cosine needs pair_encoding: siamese"),
    ({"sst": {"loss": "cosent"}}, "loss cosent does not apply to task sst"),
    ({"sts": {"loss": "cosine_embedding"}}, "loss cosine_embedding needs similarity: cosine"),
    ({"sts": {"cnn_kernel": 4}}, "cnn_kernel must be odd"),
    ({"sts": {"features": ["u", "sum"]}}, "model.heads.sts.features[1]: 'sum' is not one of"),
    ({"sts": {"poolin": "cls"}}, "unknown key model.heads.sts.poolin"),
    ({"qqp": {"pooling": "cls"}}, "model.heads: 'qqp' is not an enabled task"),
])
def test_head_settings_are_checked(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [f"model.heads={override}"])


def test_per_task_head_settings_override_the_model_wide_ones():
    cfg = load_config(None, ["model.pooling=cls", "model.heads={sts: {pair_encoding: siamese, loss: cosent}}"])
    assert cfg.model.head_config("sst").pooling == "cls" and cfg.model.head_config("sst").pair_encoding == "cross"
    assert cfg.model.head_config("sts").pooling == "cls" and cfg.model.head_config("sts").pair_encoding == "siamese"
    assert cfg.model.head_config("sts").loss == "cosent"
    with pytest.raises(ConfigError, match="have different head settings"):
        load_config(None, ["model.shared_heads=[para, sts]", "model.heads={sts: {pooling: max}}"])
    with pytest.raises(ConfigError, match="differ in input kind"):
        load_config(None, ["model.shared_heads=[sst, sts]"])
    with pytest.raises(ConfigError, match="a cosine head .* cannot be shared"):
        load_config(None, ["model.shared_heads=[para, sts]", "model.pair_encoding=siamese", "model.similarity=cosine"])


def test_metrics_and_overall_score():
    pred, gold = np.array([0.1, 0.5, 0.2, 0.9]), np.array([1.0, 2.0, 1.5, 4.0])
    assert COURSE_TASKS["sts"].metric(pred, gold) == pytest.approx(np.corrcoef(pred, gold)[0, 1])
    assert COURSE_TASKS["sst"].metric(np.array([1, 2, 3]), np.array([1, 2, 0])) == pytest.approx(2 / 3)
    assert overall_score({"sst": 0.5, "para": 0.8, "sts": 0.6}) == pytest.approx((0.5 + 0.8 + 0.8) / 3)
    assert overall_score({"sst": 0.5}) is None

"""Gradient combiners against closed forms and a direct re-computation on a real (tiny) model."""
from __future__ import annotations

import pytest
import torch

from minbert import BertModel, MultitaskModel, Tokenizer
from minbert.combine import Combiner, PCGrad, Weighted, cosines, pcgrad_weights
from minbert.heads.settings import HeadSettings as HeadConfig
from minbert.settings import CHOICES


def textbook_pcgrad(grads: list[torch.Tensor], orders: list[list[int]]) -> torch.Tensor:
    """Yu et al. 2020, Algorithm 1, written directly on the vectors."""
    total = torch.zeros_like(grads[0])
    for i, g in enumerate(grads):
        v = g.clone()
        for j in orders[i]:
            dot = v @ grads[j]
            if dot < 0:
                v = v - dot / grads[j].norm() ** 2 * grads[j]
        total += v
    return total


def combined(grads, orders):
    flat = torch.stack(grads).double()
    return pcgrad_weights(flat @ flat.T, orders) @ flat


def test_two_conflicting_tasks_closed_form():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # g1 . g2 = -1 < 0
    # each projected onto the other's normal plane: g1 - (g1.g2/|g2|^2) g2 and g2 - (g2.g1/|g1|^2) g1
    expected = (g1 + 0.5 * g2) + (g2 + g1)
    assert combined([g1, g2], [[1], [0]]).float() == pytest.approx(expected.tolist())


def test_two_agreeing_tasks_are_just_summed():
    g1, g2 = torch.tensor([1.0, 2.0, 0.0]), torch.tensor([0.5, 1.0, 3.0])
    assert combined([g1, g2], [[1], [0]]).float() == pytest.approx((g1 + g2).tolist())


@pytest.mark.parametrize("orders", [[[1, 2], [0, 2], [0, 1]], [[2, 1], [2, 0], [1, 0]]])
def test_three_tasks_match_the_textbook_algorithm(orders):
    torch.manual_seed(3)
    grads = [torch.randn(50, dtype=torch.float64) for _ in range(3)]
    grads[1] = -grads[0] + 0.3 * grads[1]  # make sure some pairs conflict
    assert (grads[0] @ grads[1]) < 0
    assert torch.allclose(combined(grads, orders), textbook_pcgrad(grads, orders))


def test_cosines_from_the_gram_matrix():
    g = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    assert cosines(g @ g.T, ["a", "b", "c"]) == pytest.approx({"a/b": 0.0, "a/c": -1.0, "b/c": 0.0})


@pytest.fixture
def tiny(tiny_backbone):
    torch.manual_seed(0)
    model = MultitaskModel(BertModel.from_pretrained(tiny_backbone), ["sst", "sts"], HeadConfig(dropout=0.0)).eval()  # no dropout noise
    tok = Tokenizer.from_pretrained(tiny_backbone)
    batches = {"sst": ([tok(["a good film", "bad"])], torch.tensor([4.0, 0.0])),
               "sts": ([tok(["a man sings", "x"], ["someone sings", "y"])], torch.tensor([4.5, 0.5]))}
    return model, batches


def loss_of(model, task, batches):
    inputs, labels = batches[task]
    return model.loss(task, model.outputs(task, inputs), labels)


def per_task_grads(model, batches):
    shared = list(model.encoder.parameters())
    out = {}
    for t in batches:
        grads = torch.autograd.grad(loss_of(model, t, batches), shared, allow_unused=True)  # the pooler is unused
        out[t] = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(shared, grads)])
    return out


@pytest.mark.parametrize("rows_only", [False, True], ids=["dense", "embedding-rows"])
@pytest.mark.parametrize("name", ["sum", "weighted", "pcgrad"])
def test_combiner_on_a_model_matches_direct_computation(tiny, name, rows_only):
    model, batches = tiny
    weights = {"sst": 0.3, "sts": 2.0}
    cfg = CHOICES["train.combine"][name](**({"weights": weights} if name == "weighted" else {}))
    shared = list(model.encoder.parameters())
    table = model.encoder.embeddings.word_embeddings if rows_only else None
    combiner = {"sum": Combiner, "weighted": Weighted, "pcgrad": PCGrad}[name](shared, cfg, 0, table)
    ref = per_task_grads(model, batches)
    head_ref = {t: torch.autograd.grad(loss_of(model, t, batches), list(model.heads[t].parameters())) for t in batches}
    combiner.begin(log_cosines=True)
    for t in batches:
        combiner.backward(t, loss_of(model, t, batches))
    cos = combiner.finish()
    got = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in shared])
    g = [ref["sst"], ref["sts"]]
    if name == "sum":
        want = g[0] + g[1]
    elif name == "weighted":
        want = weights["sst"] * g[0] + weights["sts"] * g[1]
    else:
        want = textbook_pcgrad([x.double() for x in g], [[1], [0]]).float()
    assert torch.allclose(got, want, atol=1e-6, rtol=1e-4)
    scale = weights if name == "weighted" else {"sst": 1.0, "sts": 1.0}
    for t in batches:  # heads keep their own gradients
        for p, r in zip(model.heads[t].parameters(), head_ref[t]):
            assert torch.allclose(p.grad, scale[t] * r, atol=1e-7)
    w = [scale["sst"] * g[0], scale["sts"] * g[1]]
    assert cos["sst/sts"] == pytest.approx(float(w[0] @ w[1] / (w[0].norm() * w[1].norm())), abs=1e-5)


def test_pcgrad_with_accumulated_gradient_and_a_task_seen_twice(tiny):
    """Gradient accumulated by an earlier micro-step is set aside and added back; a task seen twice in a
    step counts as the sum of its two gradients (also on the word-embedding rows)."""
    model, batches = tiny
    shared = list(model.encoder.parameters())
    ref = per_task_grads(model, batches)
    loss_of(model, "sts", batches).mul(0.5).backward()  # an earlier micro-step's gradient, left in .grad
    carry = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in shared])
    combiner = PCGrad(shared, CHOICES["train.combine"]["pcgrad"](), 0, model.encoder.embeddings.word_embeddings)
    combiner.begin(log_cosines=False)
    for t in ["sst", "sts", "sst"]:
        combiner.backward(t, loss_of(model, t, batches))
    combiner.finish()
    got = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in shared])
    want = textbook_pcgrad([2 * ref["sst"].double(), ref["sts"].double()], [[1], [0]]).float() + carry
    assert torch.allclose(got, want, atol=1e-6, rtol=1e-4)

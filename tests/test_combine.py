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
    # a step that backpropagated c before a names the pair in the run's order
    two = g[[2, 0]]
    assert cosines(two @ two.T, ["c", "a"], ["a", "b", "c"]) == pytest.approx({"a/c": -1.0})


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


# ---- torchjd's aggregators through minbert's combiner, against torchjd on the explicit Jacobian ----
import torchjd.aggregation as jd  # noqa: E402

from minbert.combine import COMBINERS, seeded  # noqa: E402

REFERENCE = {  # name -> torchjd's aggregator at the settings' defaults, applied to the Jacobian itself
    "upgrad": lambda n: jd.UPGrad(), "dualproj": lambda n: jd.DualProj(), "mgda": lambda n: jd.MGDA(),
    "cagrad": lambda n: jd.CAGrad(c=0.4), "imtl-g": lambda n: jd.IMTLG(), "aligned-mtl": lambda n: jd.AlignedMTL(),
    "torchjd-pcgrad": lambda n: jd.PCGrad(), "fairgrad": lambda n: jd.FairGrad(alpha=1.0), "random": lambda n: jd.Random(),
    "nash-mtl": lambda n: jd.NashMTL(n_tasks=n), "graddrop": lambda n: jd.GradDrop(),
}


def test_every_torchjd_method_is_a_combiner_and_tested():
    assert set(REFERENCE) <= set(COMBINERS)


def torchjd_reference(name: str, blocks: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    """torchjd's aggregator on the tasks' Jacobian (tasks x shared parameters), its random draws from a seed of
    `generator`. GradDrop is applied to each parameter's block of columns in turn (a seed each), as minbert
    applies it parameter by parameter; the others to the whole Jacobian."""
    if name == "graddrop":
        out = []
        for block in blocks:
            with seeded(generator):
                out.append(jd.GradDrop()(block))  # in float32, as the gradients are (its draws depend on the dtype)
        return torch.cat(out).double()
    jac = torch.cat(blocks, dim=1).double()
    with seeded(generator):
        return REFERENCE[name](jac.shape[0])(jac)


def per_task_blocks(model, batches, rows=None) -> list[torch.Tensor]:
    """For each shared parameter, its gradients as a (tasks x numel) block (zeros where unused); for the word-
    embedding table with `rows`, only those rows."""
    shared = list(model.encoder.parameters())
    table = model.encoder.embeddings.word_embeddings.weight
    per_task = []
    for t in batches:
        grads = torch.autograd.grad(loss_of(model, t, batches), shared, allow_unused=True)
        per_task.append([torch.zeros_like(p) if g is None else g for p, g in zip(shared, grads)])
    blocks = []
    for k, p in enumerate(shared):
        gs = [g[k] if rows is None or p is not table else g[k].index_select(0, rows) for g in per_task]
        blocks.append(torch.stack([g.reshape(-1) for g in gs]))
    return blocks


@pytest.mark.parametrize("rows_only", [False, True], ids=["dense", "embedding-rows"])
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_torchjd_aggregator_through_the_combiner_matches_torchjd_on_the_jacobian(tiny, name, rows_only):
    model, batches = tiny
    shared = list(model.encoder.parameters())
    table = model.encoder.embeddings.word_embeddings
    looked_up = torch.unique(torch.cat([x.reshape(-1) for t in batches for x in
                                        [batches[t][0][0]["input_ids"]]])) if rows_only else None
    blocks = per_task_blocks(model, batches, looked_up)
    want = torchjd_reference(name, blocks, torch.Generator().manual_seed(7))
    head_ref = {t: torch.autograd.grad(loss_of(model, t, batches), list(model.heads[t].parameters())) for t in batches}
    combiner = COMBINERS[name](shared, COMBINERS[name].settings(), 7, table if rows_only else None, None, list(batches))
    combiner.begin(log_cosines=False)
    for t in batches:
        combiner.backward(t, loss_of(model, t, batches))
    combiner.finish()
    parts = []
    for p in shared:
        g = torch.zeros_like(p) if p.grad is None else p.grad
        if rows_only and p is table.weight:
            outside = torch.ones(g.shape[0], dtype=torch.bool)
            outside[looked_up] = False
            assert not g[outside].any(), "rows no batch looked up stay zero"
            g = g.index_select(0, looked_up)
        parts.append(g.reshape(-1))
    got = torch.cat(parts).double()
    assert want.abs().max() > 0
    tol = 1e-3 if name in ("cagrad", "nash-mtl", "fairgrad") else 1e-4  # solvers stop at their own tolerance
    assert torch.allclose(got, want, rtol=tol, atol=tol * float(want.abs().max())), float((got - want).abs().max())
    for t in batches:  # heads keep their own gradients
        for p, r in zip(model.heads[t].parameters(), head_ref[t]):
            assert torch.allclose(p.grad, r, atol=1e-7)


@pytest.mark.parametrize("seed", range(5))
def test_torchjd_pcgrad_and_minbert_pcgrad_agree_on_the_same_gram_matrix_and_orders(seed):
    torch.manual_seed(seed)
    jac = torch.randn(4, 30, dtype=torch.float64)
    jac[1] = -jac[0] + 0.5 * jac[1]  # a conflicting pair at least
    gram = jac @ jac.T
    torch.manual_seed(100 + seed)
    want = jd.PCGradWeighting()(gram)
    torch.manual_seed(100 + seed)  # the orders torchjd drew: a permutation of all tasks per task, itself skipped
    orders = [[j for j in torch.randperm(4).tolist() if j != i] for i in range(4)]
    assert torch.allclose(pcgrad_weights(gram, orders), want)
    assert torch.allclose(pcgrad_weights(gram, orders) @ jac, textbook_pcgrad(list(jac), orders))


# ---- loss weightings against closed forms (a linear model: task t's gradient is a_t, its loss a value we set) ----

import torch.nn.functional as F  # noqa: E402

TASKS3 = ["sst", "para", "sts"]
A = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 1.0]])  # each task's gradient on the one shared parameter


def linear_step(combiner, losses: dict[str, float], epoch: int = 1, stepped: bool = True) -> torch.Tensor:
    """One update through the combiner: task t's loss is a_t . p (gradient a_t), its recorded value losses[t]."""
    p = combiner.shared[0]
    p.grad = None
    combiner.begin(log_cosines=False, epoch=epoch)
    for t, value in losses.items():
        combiner.backward(t, A[TASKS3.index(t)] @ p, value)
    combiner.finish()
    grad = p.grad.clone()
    combiner.after_update(stepped)
    return grad


def weighting(name, **settings):
    p = torch.nn.Parameter(torch.zeros(2))
    return COMBINERS[name]([p], COMBINERS[name].settings(**settings), 0, None, None, TASKS3)


def adam_first_step(lr, grad):
    """Adam's first step from zero moments: -lr * g / (|g| + eps) (bias-corrected)."""
    return -lr * grad / (grad.abs() + 1e-8)


def test_uncertainty_weighting_closed_form():
    """Kendall et al. 2018 (LibMTL's form): w_t = exp(-s_t) / 2; s_t descends (1 - exp(-s_t) L_t) / 2 and rests
    at log L_t."""
    c = weighting("uw", lr=0.05)
    losses = {"sst": 0.5, "para": 2.0, "sts": 4.0}
    grad = linear_step(c, losses)
    assert torch.allclose(grad, 0.5 * A.sum(0))  # s = 0: each weight 1/2
    L = torch.tensor(list(losses.values()), dtype=torch.float64)
    assert torch.allclose(c.opt.x, adam_first_step(0.05, 0.5 - 0.5 * L))
    for _ in range(2000):
        linear_step(c, losses)
    assert torch.allclose(c.opt.x.exp(), L, rtol=0.02)
    s = c.opt.x.float()
    assert torch.allclose(linear_step(c, losses), (0.5 * torch.exp(-s)) @ A, rtol=1e-5)


def test_dynamic_weight_average_closed_form():
    """Liu et al. 2019, eq. 7: 1 for two epochs, then K softmax(r / T) with r the ratio of the last two epochs'
    mean losses."""
    c = weighting("dwa", temperature=2.0)
    epochs = [{"sst": [2.0, 1.0], "para": [1.0, 1.0], "sts": [4.0, 2.0]},
              {"sst": [1.0, 1.0], "para": [0.9, 0.7], "sts": [3.0, 3.0]}]
    for e, losses in enumerate(epochs, start=1):
        for k in range(2):
            grad = linear_step(c, {t: v[k] for t, v in losses.items()}, epoch=e)
            assert torch.allclose(grad, A.sum(0))  # weights 1 in the first two epochs
    mean = [torch.tensor([sum(epochs[e][t]) / 2 for t in TASKS3]) for e in range(2)]
    want = 3 * F.softmax(mean[1] / mean[0] / 2.0, dim=0)
    grad = linear_step(c, {"sst": 1.0, "para": 1.0, "sts": 1.0}, epoch=3)
    assert torch.allclose(grad, want @ A, rtol=1e-5)
    assert want.sum() == pytest.approx(3.0)


def test_gradnorm_matches_libmtls_formula():
    """Chen et al. 2018 as LibMTL writes it: w = K softmax(xi); G_t = |w_t grad_t|; the loss ratios to the first
    update's losses; xi's first Adam step descends sum |G_t - mean(G) (r_t / mean r)^alpha| (target constant)."""
    c = weighting("gradnorm", lr=0.1, alpha=1.5)
    first = {"sst": 2.0, "para": 1.0, "sts": 0.5}
    grad = linear_step(c, first)
    assert torch.allclose(grad, A.sum(0))  # xi = 0: weights 1
    xi = c.opt.x.clone()
    # LibMTL's GradNorm at the second update, written out: loss_scale, G_per_loss, r_i, constant term, L_grad
    loss_scale = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    w = 3 * F.softmax(loss_scale, dim=-1)
    G_per_loss = torch.norm(w.unsqueeze(1) * A.double(), p=2, dim=-1)
    L_i = torch.tensor([first[t] / first[t] for t in TASKS3], dtype=torch.float64)
    r_i = L_i / L_i.mean()
    torch.abs(G_per_loss - (G_per_loss.mean() * r_i ** 1.5).detach()).sum().backward()
    assert torch.allclose(xi, adam_first_step(0.1, loss_scale.grad))
    second = {"sst": 1.0, "para": 1.0, "sts": 0.5}
    grad = linear_step(c, second)
    assert torch.allclose(grad, (3 * F.softmax(xi, dim=0)).float() @ A, rtol=1e-5)


def test_random_loss_weighting_draws_softmax_of_a_normal():
    """Lin et al. 2022 (LibMTL's RLW): w = softmax(z), z ~ N(0, I), a fresh draw each update."""
    c = weighting("rlw")
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        w = F.softmax(torch.randn(3, generator=g, dtype=torch.float64), dim=0)
        assert torch.allclose(linear_step(c, {"sst": 1.0, "para": 1.0, "sts": 1.0}), w.float() @ A, rtol=1e-5)


def test_famo_closed_form():
    """Liu et al. 2023: w_t = z_t / (c L_t), c = sum_i z_i / L_i (the last update's losses); after the next update
    xi takes Adam's step on J_softmax^T delta, delta = log L(before) - log L(after), with weight decay gamma."""
    c = weighting("famo", lr=0.025, gamma=0.01)
    before = {"sst": 2.0, "para": 1.0, "sts": 0.5}
    grad = linear_step(c, before)  # nothing known yet: c from this batch's own loss, so each w_t = z_t (1/3)
    assert torch.allclose(grad, A.sum(0) / 3, rtol=1e-5)
    after = {"sst": 1.0, "para": 0.9, "sts": 0.5}
    L = torch.tensor(list(before.values()), dtype=torch.float64)
    z = torch.full((3,), 1 / 3, dtype=torch.float64)
    want = (z / (torch.tensor(list(after.values()), dtype=torch.float64)) / (z / L).sum())
    assert torch.allclose(linear_step(c, after), want.float() @ A, rtol=1e-5)
    delta = torch.log(L) - torch.log(torch.tensor(list(after.values()), dtype=torch.float64))
    xi = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    d = torch.autograd.grad(F.softmax(xi, -1), xi, grad_outputs=delta)[0]  # FAMO's reference update
    assert torch.allclose(c.opt.x, adam_first_step(0.025, d))


@pytest.mark.parametrize("name", ["uw", "gradnorm", "famo"])
def test_a_skipped_update_leaves_learned_weights_alone(name):
    c = weighting(name)
    linear_step(c, {"sst": 1.0, "para": 2.0, "sts": 3.0})
    before = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in c.state().items()}
    linear_step(c, {"sst": 5.0, "para": 1.0, "sts": 0.1}, stepped=False)
    after = c.state()
    assert all(torch.equal(before["adam"][j], after["adam"][j]) for j in ("x", "m", "v"))
    assert before["adam"]["t"] == after["adam"]["t"]


@pytest.mark.parametrize("name", sorted(COMBINERS))
def test_every_method_takes_steps_of_one_task_between_steps_of_two(tiny, name):
    """A schedule can give a step one task only (random_subset, proportional sampling): every method takes it,
    between steps of two tasks, writing a finite and nonzero gradient; asked for them, every method reports the
    two tasks' gradient cosine, the same with the gradients it combined as without. torchjd's Nash-MTL solver refuses one
    task (cvxpy's 1 x 1 problem), so there the weight is the bargaining solution's closed form, G alpha = 1 / alpha:
    alpha = |g|^-1, the gradient at norm 1 (within max_norm 1)."""
    model, batches = tiny
    shared = list(model.encoder.parameters())
    combiner = COMBINERS[name](shared, COMBINERS[name].settings(), 7, None, None, list(batches))
    for step in (["sst"], ["sst", "sts"], ["sts"], ["sts", "sst"], ["sst"]):
        model.zero_grad(set_to_none=True)
        combiner.begin(log_cosines=True)
        for t in step:
            loss = loss_of(model, t, batches)
            combiner.backward(t, loss, value=float(loss.detach()))
        cos = combiner.finish()
        combiner.after_update(True)
        grads = [p.grad for p in shared if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.any() for g in grads), step
        if len(step) == 2:  # the cosine of the tasks' own gradients: a loss weight scales a gradient, not its direction
            ref = per_task_grads(model, batches)
            want = float(ref["sst"] @ ref["sts"] / (ref["sst"].norm() * ref["sts"].norm()))
            assert cos is not None and cos["sst/sts"] == pytest.approx(want, abs=1e-4), name
        if name == "nash-mtl" and len(step) == 1:
            assert float(torch.cat([g.reshape(-1) for g in grads]).double().norm()) == pytest.approx(1.0, rel=1e-6)

"""minbert.AdamW against torch.optim.AdamW: same trajectory over 100 steps, written-out and fused paths."""
import pytest
import torch

from minbert import AdamW


@pytest.mark.parametrize("fused", [False, True])
def test_adamw_matches_torch_adamw(fused, monkeypatch):
    kernel_calls = []
    real_kernel = torch._fused_adamw_
    monkeypatch.setattr(torch, "_fused_adamw_", lambda *a, **k: kernel_calls.append(1) or real_kernel(*a, **k))
    torch.manual_seed(0)
    init = [torch.randn(8, 5), torch.randn(5), torch.randn(5, 3)]
    ours = [p.clone().requires_grad_() for p in init]
    ref = [p.clone().requires_grad_() for p in init]

    def groups(ps):
        return [{"params": ps[:2], "lr": 1e-2, "weight_decay": 0.1},
                {"params": ps[2:], "lr": 3e-3, "weight_decay": 0.0, "betas": (0.8, 0.99)}]

    opt_a = AdamW(groups(ours), eps=1e-8, fused=fused)
    opt_b = torch.optim.AdamW(groups(ref), eps=1e-8)
    x = torch.randn(16, 8)
    for step in range(100):
        if step == 50:  # a learning-rate change mid-way
            for opt in (opt_a, opt_b):
                for g in opt.param_groups:
                    g["lr"] *= 0.3
        for ps, opt in ((ours, opt_a), (ref, opt_b)):
            opt.zero_grad()
            loss = (torch.tanh(x @ ps[0] + ps[1]) @ ps[2]).pow(2).mean()
            loss.backward()
            opt.step()
    for a, b in zip(ours, ref):
        assert (a - b).abs().max() <= 1e-6
    assert not torch.equal(ours[0], init[0])  # it did move
    assert len(kernel_calls) == (200 if fused else 0)  # the path asked for ran: one call per group and step


def test_fused_and_written_out_paths_agree_and_resume_from_an_int_step():
    """The fused kernel and the written-out update give the same weights; a state saved with an int step
    count (older checkpoints) continues where it was."""
    torch.manual_seed(1)
    init = torch.randn(64, 32)
    a, b = init.clone().requires_grad_(), init.clone().requires_grad_()
    opt_a, opt_b = AdamW([a], lr=1e-2, weight_decay=0.1, fused=False), AdamW([b], lr=1e-2, weight_decay=0.1, fused=True)
    for step in range(20):
        g = torch.randn(64, 32)
        a.grad, b.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
        if step == 9:
            state = opt_b.state_dict()
            state["state"][0]["step"] = int(state["state"][0]["step"])
            opt_b = AdamW([b], lr=1e-2, weight_decay=0.1, fused=True)
            opt_b.load_state_dict(state)
    assert torch.allclose(a, b, atol=1e-6, rtol=0)
    assert float(opt_b.state[b]["step"]) == 20

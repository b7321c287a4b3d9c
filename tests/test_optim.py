"""minbert.AdamW against torch.optim.AdamW: same trajectory over 100 steps."""
import torch

from minbert import AdamW


def test_adamw_matches_torch_adamw():
    torch.manual_seed(0)
    init = [torch.randn(8, 5), torch.randn(5), torch.randn(5, 3)]
    ours = [p.clone().requires_grad_() for p in init]
    ref = [p.clone().requires_grad_() for p in init]

    def groups(ps):
        return [{"params": ps[:2], "lr": 1e-2, "weight_decay": 0.1},
                {"params": ps[2:], "lr": 3e-3, "weight_decay": 0.0, "betas": (0.8, 0.99)}]

    opt_a = AdamW(groups(ours), eps=1e-8)
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

"""Where an encoder forward+backward spends its time: the share of matrix multiplies (aten::mm / addmm / bmm)
in minbert's BertModel and in transformers.BertModel (SDPA) on the same weights and batch, from
torch.profiler. With identical GEMMs, 1 / (GEMM share) bounds how much faster any rewrite of the rest
can make the encoder. `--compile` also times torch.compile'd minbert against both in eager mode.

Usage: python benchmarks/encoder_profile.py [--length 32] [--batch 32] [--threads 1] [--compile]
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from minbert.tools.bench import hf_model, take_turns
from minbert.backbone import resolve_backbone
from minbert.encoder import BertModel

GEMMS = {"aten::mm", "aten::addmm", "aten::bmm"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    folder = resolve_backbone(None)
    models = {"minbert": BertModel.from_pretrained(folder), "transformers": hf_model(folder, True)}
    ids = torch.randint(1000, models["minbert"].config.vocab_size, (args.batch, args.length))
    mask, types = torch.ones_like(ids), torch.zeros_like(ids)

    def step(model):
        model.train()
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=types)
        out.last_hidden_state.pow(2).mean().backward()
        model.zero_grad(set_to_none=True)

    print(f"batch {args.batch} x length {args.length}, {args.threads} thread(s), {args.steps} fwd+bwd steps profiled")
    print("| model | GEMM share | bound on speed-up from non-GEMM work | top non-GEMM ops (share) |")
    print("|---|---|---|---|")
    for name, model in models.items():
        step(model)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                step(model)
        events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
        total = sum(e.self_cpu_time_total for e in prof.key_averages())
        gemm = sum(e.self_cpu_time_total for e in events if e.key in GEMMS) / total
        rest = sorted((e for e in events if e.key not in GEMMS), key=lambda e: -e.self_cpu_time_total)[:4]
        top = ", ".join(f"{e.key[6:]} {e.self_cpu_time_total / total:.1%}" for e in rest)
        print(f"| {name} | {gemm:.1%} | {1 / gemm:.2f}x | {top} |")
    if args.compile:
        compiled = BertModel.from_pretrained(folder)
        compiled.compile(dynamic=True)  # as train.compile does: bucketed batch shapes vary
        step(compiled)  # compiles
        fns = {"minbert compiled": lambda: step(compiled)} | {n: (lambda m=m: step(m)) for n, m in models.items()}
        t = take_turns(fns, reps=5)
        print("\n| variant | fwd+bwd s | speed vs transformers |\n|---|---|---|")
        for k, v in t.items():
            print(f"| {k} | {v:.3f} | {t['transformers'] / v:.2f}x |")


if __name__ == "__main__":
    main()

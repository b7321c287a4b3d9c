"""Encoder fwd+bwd throughput on a GPU, bert-base sizes (random weights): minbert.BertModel vs
transformers.BertModel (SDPA), fp32 and bf16 autocast: medians of `--reps` steps after two warm-up rounds,
the two models taking turns in one process (minbert.tools.bench.take_turns, which waits for the GPU).

Usage (on a CUDA machine): PYTHONPATH=src python benchmarks/gpu_encoder_throughput.py [--batch 32 --length 128]
Prints one markdown row per (model, precision): sequences/s, tokens/s and the ratio to transformers.
"""
from __future__ import annotations

import argparse

import torch

from minbert.tools.bench import take_turns
from minbert.encoder import BertConfig, BertModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--layers", type=int, default=12, help="fewer for a quick check")
    args = ap.parse_args()
    import transformers

    torch.manual_seed(0)
    dev = args.device
    ours = BertModel(BertConfig(num_hidden_layers=args.layers)).to(dev).train()
    theirs = transformers.BertModel(transformers.BertConfig(num_hidden_layers=args.layers, attn_implementation="sdpa"),
                                    add_pooling_layer=False).to(dev).train()
    ids = torch.randint(1000, 30000, (args.batch, args.length), device=dev)
    mask = torch.ones_like(ids)

    def step(model, dtype):
        def run():
            with torch.autocast(dev, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                out = model(input_ids=ids, attention_mask=mask)
                hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
            hidden.float().mean().backward()
            model.zero_grad(set_to_none=True)
        return run

    print(f"| model | precision | seq/s | tokens/s | vs transformers | (batch {args.batch}, length {args.length}, "
          f"{torch.cuda.get_device_name() if dev == 'cuda' else dev}, {args.layers} layers) |")
    print("|---|---|---|---|---|---|")
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        t = take_turns({"ours": step(ours, dtype), "theirs": step(theirs, dtype)}, args.reps, warmup=2)
        t_ours, t_theirs = t["ours"], t["theirs"]
        for label, t in (("minbert", t_ours), ("transformers", t_theirs)):
            print(f"| {label} | {name} | {args.batch / t:.0f} | {args.batch * args.length / t:,.0f} "
                  f"| {t_theirs / t:.2f}× | |")


if __name__ == "__main__":
    main()

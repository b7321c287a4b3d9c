"""`minbert bench`: speed of minbert against `transformers` on the same weights and against the machine.

Every figure is a median of `reps` timings taken in one process, the compared variants taking turns, and
is reported with its ratio (timings on shared machines drift; ratios in one run hold better). Parts:
- encoder: forward and forward+backward sequences/s (x length = tokens/s), minbert.BertModel vs
  transformers.BertModel (SDPA attention), same weights, batch and lengths;
- matmul: the machine's fp32 matmul FLOP/s, and the share of it a multi-task training step reaches
  (model FLOPs of the step's real batch shapes / step time);
- padding: pad tokens / all tokens of the training batches with and without length bucketing;
- combine: step time of sum, pcgrad, smart and a distilled step (teachers' targets mixed in) on the same batches;
- mtl: step time of every `train.combine.name` method against `sum`, one trainer whose combiner is swapped,
  each method's step on the same batches (the batch streams rewound before each);
- tasks: step time of the catalogue's SST against a declared copy of it (the same definition under another name,
  read through `task_defs`) on the same rows and batches;
- predict: examples/s of minbert's batched prediction vs a plain transformers model on the same rows;
- predict_file: rows/s of file prediction (read, predict, write CSV; `minbert predict --input`) vs a
  transformers text-classification pipeline on the same exported encoder weights, rows and batch size;
- train: training examples/s of minbert vs a plain transformers fine-tuning loop (random batches padded
  to their longest, torch AdamW, batch 32).
`transformers` is only needed for the comparisons (it is a test dependency); without it they are skipped.
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from ..backbone import resolve_backbone
from ..schema import load_config
from ..data.batching import bucketed_batches, shuffled_batches
from ..data.loading import resolve_data_dir
from ..encoder import BertModel
from ..optim import AdamW
from ..tasks import get_task
from ..tokenizer import Tokenizer

PARTS = ("encoder", "matmul", "padding", "combine", "mtl", "tasks", "optimizer", "predict", "predict_file", "train")


def _sync() -> None:
    """Wait for queued GPU work, so that a timing covers it (nothing to wait for on a CPU run)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object]) -> float:
    _sync()
    t0 = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t0


def take_turns(fns: dict[str, Callable[[], object]], reps: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, the functions called in turn, `warmup` rounds dropped."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(warmup + reps):
        for k, fn in fns.items():
            t = timed(fn)
            if r >= warmup:
                times[k].append(t)
    return {k: statistics.median(v) for k, v in times.items()}


def hf_model(folder: Path, training: bool):
    import transformers
    model = transformers.BertModel.from_pretrained(str(folder), attn_implementation="sdpa", add_pooling_layer=True)
    return model.train(training)


def encoder_rows(backbone: str | None, lengths: list[int], batch: int, reps: int) -> list[dict]:
    folder = resolve_backbone(backbone)
    ours = BertModel.from_pretrained(folder)
    try:
        theirs = hf_model(folder, False)
    except ImportError:
        theirs = None
    rows = []
    g = torch.Generator().manual_seed(0)
    for n in lengths:
        ids = torch.randint(1000, ours.config.vocab_size, (batch, n), generator=g)
        mask, types = torch.ones_like(ids), torch.zeros_like(ids)

        def fwd(model):
            model.eval()
            with torch.inference_mode():
                return model(input_ids=ids, attention_mask=mask, token_type_ids=types)

        def fwd_bwd(model):
            model.train()
            out = model(input_ids=ids, attention_mask=mask, token_type_ids=types)
            out.last_hidden_state.float().pow(2).mean().backward()
            model.zero_grad(set_to_none=True)

        fns = {"minbert fwd": lambda: fwd(ours), "minbert fwd+bwd": lambda: fwd_bwd(ours)}
        if theirs is not None:
            fns |= {"hf fwd": lambda: fwd(theirs), "hf fwd+bwd": lambda: fwd_bwd(theirs)}
        t = take_turns(fns, reps)
        row = {"length": n, "batch": batch, **{f"{k} seq/s": batch / v for k, v in t.items()}}
        if theirs is not None:
            row["fwd ratio"] = t["hf fwd"] / t["minbert fwd"]
            row["fwd+bwd ratio"] = t["hf fwd+bwd"] / t["minbert fwd+bwd"]
        rows.append(row)
    return rows


def matmul_flops(reps: int, n: int = 2048) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = take_turns({"mm": lambda: a @ b}, reps)["mm"]
    return 2 * n ** 3 / t


def encoder_flops(config, shapes: list[tuple[int, int]]) -> float:
    """Forward FLOPs of the encoder layers on inputs of these (batch, length) shapes: the matmuls of
    attention projections, attention scores and values, and the feed-forward."""
    h, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    total = 0.0
    for b, n in shapes:
        tokens = b * n
        total += layers * (2 * tokens * (4 * h * h + 2 * h * inter) + 4 * b * n * n * h)
    return total


def pad_share(lengths: list[int], batches: list[list[int]]) -> float:
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - real / padded


def padding_rows(cfg, data_path: Path, tokenizer: Tokenizer) -> list[dict]:
    """Pad share of one epoch's training batches of each task, length-bucketed vs plain random batches."""
    from ..data.loading import load_split
    rows = []
    for name in cfg.tasks:
        data = load_split(cfg.task(name), "train", data_path, tokenizer, True, False, lambda line: None)
        lengths, bs = data.lengths(), cfg.train.batch_size[name]
        bucketed = bucketed_batches(lengths, bs, torch.Generator().manual_seed(0))
        plain = shuffled_batches(len(lengths), bs, torch.Generator().manual_seed(0))
        rows.append({"task": name, "batch": bs, "bucketed pad share": pad_share(lengths, bucketed),
                     "random pad share": pad_share(lengths, plain)})
    return rows


def make_trainers(variants: dict[str, list[str]], base: list[str], run_root: Path) -> dict:
    """A Trainer per variant, all reading the same batches (same seed and data); nothing is saved."""
    from ..training.run import check_inputs
    from ..training.trainer import Trainer
    trainers = {}
    for i, (name, extra) in enumerate(variants.items()):
        cfg = load_config(None, base + extra)
        run = run_root / f"variant-{i}"
        data_path, backbone, teachers = check_inputs(cfg, None)
        trainer = Trainer(cfg, run, data_path, lambda line: None, backbone=backbone, teachers=teachers)
        trainer.begin_epoch()
        trainers[name] = trainer
    return trainers


def train_step(trainer) -> Callable[[], None]:
    def step():
        trainer.train_step(list(trainer.cfg.tasks))
    return step


STEP_BATCHES = "{sst: 16, para: 32, sts: 16}"  # configs/default.yaml's batch sizes
STEP_BASE = ["data.train_limit=400", "data.dev_limit=32", f"train.batch_size={STEP_BATCHES}", "train.epochs=1",
             "eval.test_predictions=false"]
STEP_VARIANTS = {"sum": [], "pcgrad": ["train.combine.name=pcgrad"], "smart (T=1)": ["train.smart.lambda_s=1.0"],
                 "smart steps=0 (R3F)": ["train.smart.lambda_s=1.0", "train.smart.steps=0"],
                 "distilled (BAM!)": []}  # given teachers' targets by `with_teacher_targets`


def with_teacher_targets(trainer) -> None:
    """Give every task of `trainer` a teacher target for each training row (random: a step's cost does not depend on
    the values) mixed half and half with the gold loss: a distilled step without training teachers first."""
    from ..training.distill import DistillSettings
    from ..training.distill import Distiller

    g = torch.Generator().manual_seed(0)
    tasks = trainer.model.tasks
    outputs = {n: torch.randn(1, len(d), *([tasks[n].num_outputs] if tasks[n].num_outputs > 1 else []), generator=g)
               for n, d in trainer.train_sets.items()}
    cfg = DistillSettings(teachers={n: ["random"] for n in outputs}, anneal="constant", gold_weight=0.5)
    trainer.distiller = Distiller(cfg, trainer.model.tasks, outputs,
                                  {n: torch.ones(o.shape[:2], dtype=torch.bool) for n, o in outputs.items()}, 1)


def step_rows(base: list[str], run_root: Path, reps: int, matmul: float | None) -> list[dict]:
    """Step time of each combiner / regulariser on the same batches; for `sum`, the share of the machine's
    matmul FLOP/s it reaches (encoder FLOPs of the batches' real padded shapes, x3 for the backward)."""
    trainers = make_trainers(STEP_VARIANTS, base, run_root)
    with_teacher_targets(trainers["distilled (BAM!)"])
    shapes: list[tuple[int, int]] = []
    plain = trainers["sum"]
    plain.model.encoder.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
    times: dict[str, list[float]] = {k: [] for k in trainers}
    flops: list[float] = []
    for r in range(1 + reps):
        for name, trainer in trainers.items():
            shapes.clear()
            t = timed(train_step(trainer))
            if r >= 1:
                times[name].append(t)
                if name == "sum":
                    flops.append(3 * encoder_flops(plain.model.encoder.config, shapes) / t)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [{"variant": k, "s/step": v, "ratio": v / med["sum"]} for k, v in med.items()]
    rows[0]["model FLOP/s"] = statistics.median(flops)
    if matmul:
        rows[0]["share of matmul FLOP/s"] = rows[0]["model FLOP/s"] / matmul
    return rows


def mtl_rows(base: list[str], run_root: Path, reps: int) -> list[dict]:
    """Step time of each multi-task method (train.combine.name) against `sum`, the methods taking turns on one
    trainer, each step on the same batches (the streams rewound to one position before each): the ratio is the
    method's cost on top of a plain step (its backward passes, Gram matrix, weighting and combination)."""
    import copy

    from ..combine import COMBINERS, build_combiner
    from ..settings import CHOICES
    trainer = make_trainers({"sum": []}, base, run_root)["sum"]
    trainer.run_dir.mkdir(parents=True, exist_ok=True)  # many updates on one trainer: its step log writes
    shared = list(trainer.model.encoder.parameters())
    table = trainer.model.encoder.embeddings.word_embeddings
    combiners = {name: build_combiner(CHOICES["train.combine"][name](), shared, trainer.cfg.train.seed, table,
                                      None, trainer.cfg.tasks) for name in COMBINERS}
    start = {n: copy.deepcopy(s.state()) for n, s in trainer.streams.items()}
    times: dict[str, list[float]] = {k: [] for k in combiners}
    for r in range(1 + reps):
        for name, combiner in combiners.items():
            for n, stream in trainer.streams.items():
                stream.load_state(copy.deepcopy(start[n]))
            trainer.combiner = combiner
            t = timed(train_step(trainer))
            if r >= 1:
                times[name].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return [{"method": k, "s/step": v, "ratio": v / med["sum"], "gram": combiners[k].needs_capture()}
            for k, v in med.items()]


def declared_copy(name: str, task) -> str:
    """A `--set` of `task_defs` declaring `task` again under `name`: its definition as a user would write it."""
    spec = {k: v for k, v in dataclasses.asdict(task.spec).items() if v is not None}
    return "task_defs=" + json.dumps({name: spec})


def task_rows(base: list[str], run_root: Path, reps: int) -> list[dict]:
    """Step time of training the catalogue's SST and a declared copy of it, taking turns on the same batches."""
    variants = {"sst (catalogue)": ["tasks=[sst]"],
                "my_sst (declared in task_defs)": ["tasks=[my_sst]", declared_copy("my_sst", get_task("sst")),
                                                   "train.batch_size={my_sst: 16}"]}
    trainers = make_trainers(variants, base, run_root)
    t = take_turns({k: train_step(v) for k, v in trainers.items()}, reps)
    ref = t["sst (catalogue)"]
    return [{"task": k, "s/step": v, "ratio": v / ref} for k, v in t.items()]


def optimizer_rows(backbone: str | None, reps: int) -> list[dict]:
    """One optimizer step over every parameter of the backbone (random gradients): minbert's AdamW, fused
    and written out, against torch.optim.AdamW with its default (for-loop on CPU) and fused kernels."""
    makers = {
        "minbert AdamW (fused, default)": lambda ps: AdamW(ps, lr=1e-5, fused=True),
        "minbert AdamW (written out)": lambda ps: AdamW(ps, lr=1e-5, fused=False),
        "torch AdamW (default)": lambda ps: torch.optim.AdamW(ps, lr=1e-5),
        "torch AdamW (fused)": lambda ps: torch.optim.AdamW(ps, lr=1e-5, fused=True),
    }
    steps = {}
    for name, make in makers.items():
        params = [p.detach().clone().requires_grad_() for p in BertModel.from_pretrained(backbone).parameters()]
        for p in params:
            p.grad = torch.randn_like(p)
        steps[name] = make(params).step
    t = take_turns(steps, reps)
    base = t["torch AdamW (default)"]
    return [{"optimizer": k, "ms/step": 1000 * v, "speed vs torch default": base / v} for k, v in t.items()]


def predict_rows(backbone: str | None, data_path: Path, reps: int, limit: int = 512, batch: int = 64) -> list[dict]:
    """Examples/s predicting SST sentences and Quora pairs: minbert (length-sorted batches, inference
    mode) vs a plain transformers BertModel + the same mean pooling and linear head, batches in file order
    padded to their longest (a pipeline's default), tokenisation included in both."""
    from ..data.batching import encode_examples
    from ..evaluate import predict_set
    from ..model import MultitaskModel
    folder = resolve_backbone(backbone)
    tok = Tokenizer.from_pretrained(folder)
    model = MultitaskModel(BertModel.from_pretrained(folder), ["sst", "para"]).eval()
    try:
        import transformers
        hf, hf_tok = hf_model(folder, False), transformers.AutoTokenizer.from_pretrained(str(folder))
    except ImportError:
        hf = None
    rows = []
    for name in ("sst", "para"):
        task = get_task(name)
        examples = task.read(data_path, "dev")[0][:limit]

        def ours():
            data = encode_examples(examples, tok, True)
            predict_set(model, name, data, tok, batch)

        def theirs():
            head = model.heads[name]
            with torch.inference_mode():
                for i in range(0, len(examples), batch):
                    cols = list(zip(*(e.texts for e in examples[i:i + batch])))
                    x = hf_tok(*cols, padding=True, truncation=True, max_length=128, return_tensors="pt")
                    hidden = hf(**x).last_hidden_state
                    m = x["attention_mask"].unsqueeze(-1).float()
                    head.out((hidden * m).sum(1) / m.sum(1))

        fns = {"minbert": ours} | ({"hf": theirs} if hf is not None else {})
        t = take_turns(fns, reps)
        row = {"task": name, "rows": len(examples), **{f"{k} ex/s": len(examples) / v for k, v in t.items()}}
        if hf is not None:
            row["ratio"] = t["hf"] / t["minbert"]
        rows.append(row)
    return rows


def bench_run(folder: Path, run_dir: Path) -> Path:
    """A run directory holding `folder`'s encoder and a fresh SST head: timings need weights, not training."""
    from ..config import save_config
    from ..model import build_model
    cfg = load_config(None, [f"model.backbone={folder}", "tasks=[sst]"])
    model, tok = build_model(cfg)
    model.save(run_dir / "best")
    tok.save_pretrained(run_dir / "best")
    save_config(cfg, run_dir / "config.yaml")
    return run_dir


def predict_file_rows(backbone: str | None, data_path: Path, run_root: Path, reps: int, batch: int) -> list[dict]:
    """Rows/s predicting a file (the SST dev file: read, predict, write CSV with class probabilities):
    minbert's Predictor as `minbert predict --input` runs it vs a transformers text-classification pipeline
    on the same encoder weights (the run exported with `minbert export --format hf`), the same rows and batch
    size; models loaded before the timing."""
    import csv
    import io

    import transformers

    from ..data.inputs import read_inputs
    from .export import export
    from ..predict import Predictor, write_results
    run = bench_run(resolve_backbone(backbone), run_root / "predict-file")
    hf_dir = export(run, run_root / "predict-file-hf", "hf")
    predictor = Predictor.load(run, batch_size=batch)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the export carries minbert's heads apart: HF makes its own
    try:
        model = transformers.AutoModelForSequenceClassification.from_pretrained(str(hf_dir), num_labels=5)
        pipe = transformers.pipeline("text-classification", model=model, device=predictor.device,
                                     tokenizer=transformers.AutoTokenizer.from_pretrained(str(hf_dir)))
    finally:
        transformers.logging.set_verbosity(verbosity)
    path = get_task("sst").path(data_path, "dev")

    def ours() -> int:
        examples, _ = read_inputs(path, ("sentence",))
        return write_results(predictor.predict_examples("sst", examples), io.StringIO(), jsonl=False)

    def theirs() -> int:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        results = pipe([r["sentence"].strip() for r in rows], batch_size=batch, truncation=True, max_length=128,
                       top_k=None)
        out = csv.writer(io.StringIO())
        for r, res in zip(rows, results):
            scores = sorted(res, key=lambda x: x["label"])
            out.writerow([r["id"].strip(), max(res, key=lambda x: x["score"])["label"],
                          *(f"{x['score']:.6f}" for x in scores)])
        return len(rows)

    n = ours()
    t = take_turns({"minbert": ours, "pipeline": theirs}, reps)
    return [{"task": "sst", "rows": n, "batch": batch, "minbert rows/s": n / t["minbert"],
             "pipeline rows/s": n / t["pipeline"], "ratio": t["pipeline"] / t["minbert"]}]


def train_rows(backbone: str | None, data_path: Path, run_root: Path, reps: int, steps: int = 10) -> list[dict]:
    """Training examples/s, one task at a time at batch 32: minbert's loop (bucketed batches, its AdamW) vs
    a plain transformers loop (BertForSequenceClassification, random batches padded to their longest,
    torch AdamW, pairs as one input) on the same rows."""
    import transformers
    folder = resolve_backbone(backbone)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    rows = []
    for name, labels in (("sst", 5), ("para", 2)):
        task = get_task(name)
        examples = task.read(data_path, "train")[0]
        base = [f"model.backbone={folder}", f"tasks=[{name}]", "train.batch_size={sst: 32, para: 32}",
                "data.train_limit=4000", "data.dev_limit=32", "train.epochs=1", "eval.test_predictions=false"]
        ours = make_trainers({"minbert": []}, base, run_root / name)["minbert"]
        hf = transformers.BertForSequenceClassification.from_pretrained(str(folder), num_labels=labels).train()
        opt = torch.optim.AdamW(hf.parameters(), lr=5e-5)
        g = torch.Generator().manual_seed(0)

        def hf_steps():
            for _ in range(steps):
                idx = torch.randint(len(examples), (32,), generator=g).tolist()
                cols = list(zip(*(examples[i].texts for i in idx)))
                x = hf_tok(*cols, padding=True, truncation=True, max_length=128, return_tensors="pt")
                y = torch.tensor([int(examples[i].label) for i in idx])
                hf(**x, labels=y).loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

        def our_steps():
            for _ in range(steps):
                train_step(ours)()

        t = take_turns({"minbert": our_steps, "hf": hf_steps}, reps)
        rows.append({"task": name, "minbert ex/s": 32 * steps / t["minbert"], "hf ex/s": 32 * steps / t["hf"],
                     "ratio": t["hf"] / t["minbert"]})
    return rows


def table(rows: list[dict]) -> list[str]:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) and abs(v) < 1 else (f"{v:,.1f}" if isinstance(v, float) else str(v))  # noqa: E731
    return ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)] + \
        ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]


class _Logged(dict):
    """Results by part, each printed as a markdown table the moment it is measured."""

    def __init__(self, log):
        super().__init__()
        self.log = log

    def __setitem__(self, part: str, rows: list[dict]) -> None:
        super().__setitem__(part, rows)
        self.log(f"\n## {part}\n" + "\n".join(table(rows)))


def bench(parts: list[str], backbone: str | None, lengths: list[int], batch: int, reps: int,
          run_root: Path, log=None) -> dict[str, list[dict]]:
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))  # stdout: the JSON result only
    data_path = resolve_data_dir()
    if backbone:  # a folder or Hub id: resolved once, every part then reads the local folder
        backbone = str(resolve_backbone(backbone))
    torch.manual_seed(0)
    out: dict[str, list[dict]] = _Logged(log)
    matmul = None
    if "matmul" in parts or "combine" in parts:
        matmul = matmul_flops(reps)
        out["matmul"] = [{"fp32 matmul FLOP/s (2048^3)": matmul, "threads": torch.get_num_threads()}]
    if "encoder" in parts:
        out["encoder"] = encoder_rows(backbone, lengths, batch, reps)
    if "padding" in parts:
        cfg = load_config(None, [f"train.batch_size={STEP_BATCHES}"])
        out["padding"] = padding_rows(cfg, data_path, Tokenizer.from_pretrained(resolve_backbone(backbone)))
    common = [f"model.backbone={backbone}"] if backbone else []
    if "combine" in parts:
        out["combine"] = step_rows(common + STEP_BASE, run_root / "combine", reps, matmul)
    if "mtl" in parts:
        out["mtl"] = mtl_rows(common + STEP_BASE, run_root / "mtl", reps)
    if "tasks" in parts:
        out["tasks"] = task_rows(common + STEP_BASE, run_root / "tasks", reps)
    if "optimizer" in parts:
        out["optimizer"] = optimizer_rows(backbone, reps)
    if "predict" in parts:
        out["predict"] = predict_rows(backbone, data_path, reps)
    if "predict_file" in parts:
        try:
            out["predict_file"] = predict_file_rows(backbone, data_path, run_root, reps, batch)
        except ImportError:
            log("bench: transformers is not installed; skipping the pipeline comparison")
    if "train" in parts:
        try:
            out["train"] = train_rows(backbone, data_path, run_root / "train", reps)
        except ImportError:
            log("bench: transformers is not installed; skipping the training-loop comparison")
    return dict(out)

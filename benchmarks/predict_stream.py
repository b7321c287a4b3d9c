"""Rows/s and peak memory of `minbert predict` over files of growing size, against a transformers pipeline
over the same weights and, optionally, against another checkout of minbert (the code before streaming).

    .venv/bin/python benchmarks/predict_stream.py --rows 5000 10000 100000 1000000 \
        --baseline-src /path/to/old/checkout/src --baseline-rows 5000 150000 --json docs/assets/predict-stream.json

Each measurement is a fresh process (`minbert predict RUN --task sst --input FILE --output OUT.csv`, or the
pipeline script below) whose peak RSS is read from the kernel (`os.wait4`) and whose wall time, model
loading included, gives rows/s. The runs take turns size by size, so machine load falls on all alike.
Inputs: CSV files of `id,sentence` made from the course's SST training sentences cut to their first
`--words` words (short sentences), cycled to the size asked. The run is all-MiniLM-L6-v2's encoder with a
fresh SST head (`minbert bench`'s run: timings need weights, not training); the pipeline is
`transformers.pipeline("text-classification")` over the same run exported with `minbert export --format hf`
(its classifier is its own, which costs nothing next to the encoder), fed by a generator over the file's rows
and writing each result as it comes: the streaming use of a pipeline. Same batch size and threads
(`--threads`, through OMP_NUM_THREADS and RAYON_NUM_THREADS) for all.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PIPELINE = r'''
import collections, csv, sys
import torch, transformers
folder, src, dst, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
transformers.logging.set_verbosity_error()
model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=5)
pipe = transformers.pipeline("text-classification", model=model, device="cpu",
                             tokenizer=transformers.AutoTokenizer.from_pretrained(folder))
with open(src, newline="", encoding="utf-8") as f, open(dst, "w", newline="", encoding="utf-8") as out:
    rows = csv.DictReader(f)
    ids = collections.deque()
    def texts():
        for r in rows:
            ids.append(r["id"])
            yield r["sentence"]
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["id", "prediction", *(f"prob_{k}" for k in range(5))])
    for res in (pipe(texts(), batch_size=batch, truncation=True, max_length=128, top_k=None)):
        scores = sorted(res, key=lambda x: x["label"])
        w.writerow([ids.popleft(), max(res, key=lambda x: x["score"])["label"][-1], *(f"{x['score']:.6f}" for x in scores)])
'''


def make_file(path: Path, n: int, sentences: list[str]) -> Path:
    if not path.exists():
        tmp = path.with_name(path.name + ".part")
        with tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["id", "sentence"])
            w.writerows([f"r{i}", sentences[i % len(sentences)]] for i in range(n))
        os.replace(tmp, path)
    return path


def measure(cmd: list[str], env: dict) -> dict:
    """Wall seconds and peak RSS (MiB) of one process, from the kernel's accounting of that child."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, nargs="+", default=[5000, 10000, 100000, 1000000])
    p.add_argument("--pipeline-rows", type=int, nargs="*", help="sizes the pipeline runs at (default: --rows)")
    p.add_argument("--baseline-src", help="another checkout's src/ (the code before streaming), run at --baseline-rows")
    p.add_argument("--baseline-rows", type=int, nargs="*", default=[5000, 150000])
    p.add_argument("--sides", nargs="+", default=["minbert", "minbert before", "pipeline"],
                   help="which to run (\"minbert before\" needs --baseline-src)")
    p.add_argument("--reps", type=int, default=1, help="turns at each size")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--words", type=int, default=8, help="each sentence's first N words")
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--work", default=str(REPO / "runs" / "predict-stream"), help="scratch folder")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()

    sys.path.insert(0, str(REPO / "src"))
    from minbert.backbone import resolve_backbone
    from minbert.tasks import get_task
    from minbert.tools.bench import bench_run
    from minbert.tools.export import export

    work = Path(args.work)
    run = work / "run"
    if not (run / "config.yaml").exists():
        bench_run(resolve_backbone(None), run)
    hf = work / "run-hf"
    if not (hf / "config.json").exists():
        export(run, hf, "hf")
    sentences = [" ".join(e.texts[0].split()[:args.words]) for e in get_task("sst").read(Path(args.data_dir), "train")[0]]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "RAYON_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    ours = {**env, "PYTHONPATH": str(REPO / "src")}
    sides = {"minbert": (args.rows, ours, [sys.executable, "-m", "minbert", "predict", str(run), "--task", "sst",
                                           "--batch-size", str(args.batch), "--input"])}
    if args.baseline_src:
        sides["minbert before"] = (args.baseline_rows, {**env, "PYTHONPATH": args.baseline_src}, sides["minbert"][2])
    pipe_rows = args.rows if args.pipeline_rows is None else args.pipeline_rows
    sides["pipeline"] = (pipe_rows, env, [sys.executable, "-c", PIPELINE, str(hf)])
    sides = {name: side for name, side in sides.items() if name in args.sides}
    results = []
    sizes = list(dict.fromkeys([*args.rows, *sorted({n for rows, _, _ in sides.values() for n in rows})]))
    for n in sizes:  # --rows in the order given (the largest first, if it matters most), then the other sides' sizes
        src = make_file(work / f"short-{n}.csv", n, sentences)
        for rep in range(args.reps):
            for name, (rows, side_env, cmd) in sides.items():
                if n not in rows:
                    continue
                dst = work / f"out-{name.replace(' ', '-')}-{n}.csv"
                dst.unlink(missing_ok=True)
                full = cmd + [str(src), "--output", str(dst)] if name != "pipeline" else cmd + [str(src), str(dst), str(args.batch)]
                m = measure(full, side_env)
                row = {"side": name, "rows": n, "rep": rep, **m, "rows_per_s": round(n / m["seconds"], 1)}
                print(json.dumps(row), flush=True)
                results.append(row)
    if args.json:
        meta = {"command": " ".join(sys.argv), "threads": args.threads, "batch": args.batch, "words": args.words,
                "cpu_count": os.cpu_count(), "load_at_end": os.getloadavg()}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()

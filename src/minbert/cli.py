"""The `minbert` command: train, evaluate, predict and the other tools. Logs go to standard error; the one JSON
result line that each command prints last is alone on standard output. Errors are one line, never a traceback."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path

from . import __version__, writes
from .tools.bench import PARTS as BENCH_PARTS, bench
from .errors import EXPECTED_ERRORS, WRITE_FAILED, ConfigError, TrainingError, WriteError
from .schema import load_config
from .data.batching import CHUNK_ROWS
from .training.interrupts import TrainingInterrupted


def cmd_train(args: argparse.Namespace) -> int:
    from .training.run import resume, resume_config, train

    if args.resume:
        import os
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError("--resume runs in one process; resume without torchrun (the run continues exactly)")
        if args.out:
            raise ConfigError("--resume RUN_DIR continues that run in place; leave out --out")
        if args.overwrite:
            raise ConfigError("--resume RUN_DIR continues that run; --overwrite is for starting a new one with --out")
        out = Path(args.resume)
        new_cfg = load_config(args.config, args.set) if (args.config or args.set) else None
        if args.check:
            from .preflight import preflight_resume
            cfg, data_dir = resume_config(out, new_cfg, args.force, args.data_dir)
            from .training.init_from import has_checkpoint
            print(json.dumps(with_teachers(preflight_resume(cfg, out, data_dir), cfg, data_dir,
                                           start=not has_checkpoint(out))))
            return 0
        metrics = resume(out, new_cfg, args.force, args.data_dir)
    else:
        from .distributed import from_environment

        cfg = load_config(args.config, args.set)
        if args.check:
            from .preflight import preflight
            print(json.dumps(with_teachers(preflight(cfg, args.data_dir), cfg, args.data_dir)))
            return 0
        from .api import default_run_dir

        out = Path(args.out) if args.out else default_run_dir(args.config)
        parallel = from_environment(cfg.train.device)  # torchrun: one process per device / CPU share
        metrics = train(cfg, out, args.data_dir, parallel, overwrite=args.overwrite)
        if not parallel.main:
            return 0
    print(json.dumps({"run_dir": str(out), "best_dev": metrics}))
    return 0


def with_teachers(summary: dict, cfg, data_dir: str | None, start: bool = True) -> dict:
    """`train --check`: the distillation teachers and (for a run that `start`s) `train.init_from` checked too, and
    listed, as a run checks them."""
    from .training.init_from import check_init
    from .training.run import check_inputs

    _, _, teachers = check_inputs(cfg, data_dir)
    if start and check_init(cfg) is not None:  # a resume from a checkpoint does not read it
        summary["init_from"] = cfg.train.init_from
    if teachers:
        summary["teachers"] = {task: [str(t.folder) for t in ts] for task, ts in teachers.items()}
    return summary


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .data.loading import resolve_data_dir
    from .run_folder import RunFolder
    from .runs import load_run, tasks_with_files
    from .evaluate import write_split_predictions
    from .training.setup import RunLog

    run_dir = Path(args.run_dir)
    cfg, model, tokenizer = load_run(run_dir)
    data_path = resolve_data_dir(args.data_dir, cfg.data.dir)
    tasks = tasks_with_files(model.tasks, data_path, args.split,
                             log=lambda line: print(f"minbert: {line}", file=sys.stderr))
    out_dir = Path(args.out) if args.out else run_dir
    # one writer: into the run (it rewrites the run's prediction files), or into another folder (never a run's)
    with RunFolder.output(out_dir, "evaluate --out") if args.out else RunFolder.lock(run_dir):
        writes.mkdir(out_dir)
        log = RunLog(out_dir / "evaluate.log")
        metrics = write_split_predictions(model, tokenizer, cfg, data_path, out_dir, args.split, None, log, tasks)
        result = {"run_dir": str(run_dir), "split": args.split, "tasks": tasks, "metrics": metrics}
        if args.out:
            result["out"] = str(out_dir)
            writes.write_text(out_dir / f"{args.split}-metrics.json", json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .data.inputs import STDIN, no_rows_error, open_inputs
    from .predict import Predictor, ResultWriter, whole_file
    from .runs import check_run

    texts = args.text
    if args.input is None and texts == [STDIN]:
        texts, args.input = [], STDIN
    if bool(texts) == (args.input is not None):
        raise ConfigError("predict takes either TEXT (one sentence or a pair) or --input FILE (or - for standard input)")
    if texts and args.output:
        raise ConfigError("--output goes with --input FILE; TEXT prints one JSON line")
    if args.chunk_size is not None and args.chunk_size < 1:
        raise ConfigError(f"--chunk-size {args.chunk_size}: expected a positive number of rows")
    cfg = check_run(args.run_dir)
    if args.task not in cfg.tasks:
        raise ConfigError(f"--task {args.task}: this run was trained on {cfg.tasks}")
    task = cfg.task(args.task)
    if texts:  # the one-text form: one JSON line
        if len(texts) != len(task.text_columns):
            raise ConfigError(f"--task {args.task} takes {len(task.text_columns)} text(s), got {len(texts)}")
        res = Predictor.load(args.run_dir, args.batch_size).predict(args.task, [tuple(texts)])
        result = {"task": args.task, "prediction": res.formatted()[0]}
        if res.probabilities is not None:  # a classifier's class probabilities, or the paraphrase probability
            probs = res.probabilities[0]
            result["probability" if probs.ndim == 0 else "probabilities"] = (
                round(float(probs), 4) if probs.ndim == 0 else [round(float(p), 4) for p in probs])
        print(json.dumps(result))
        return 0
    out = Path(args.output) if args.output else None
    if out is not None and args.input != STDIN and out.resolve() == Path(args.input).resolve():
        raise ConfigError(f"--output {args.output} is the --input file; write the predictions to another file")
    if out is not None and out.is_dir():
        raise ConfigError(f"--output {args.output} is a folder; name the file to write (e.g. {out / 'predictions.csv'})")
    if args.strict and args.input != STDIN:  # a first pass, so that a bad row stops the run before any output
        for _ in open_inputs(args.input, task.text_columns, strict=True, id_column=task.spec.id):
            pass
    inputs = open_inputs(args.input, task.text_columns, args.strict, id_column=task.spec.id)  # the header is checked before loading
    report = inputs.report
    for note in report.notes:
        print(f"{report.file}: note: {note}", file=sys.stderr)
    report.on_bad = lambda bad: tqdm_write(f"  skipped {bad}")
    predictor = Predictor.load(args.run_dir, args.batch_size)
    total = inputs.size_hint() if sys.stderr.isatty() else None
    with stop_on_signals(), (whole_file(out) if out else contextlib.nullcontext(sys.stdout)) as sink:
        writer = ResultWriter(sink, jsonl=out is not None and out.suffix == ".jsonl")
        try:
            for res in predictor.predict_examples_iter(args.task, inputs, args.chunk_size or CHUNK_ROWS,
                                                       ready=inputs.ready, progress=True, total=total):
                writer.write(res)
        except BrokenPipeError:  # the reader of standard output has gone (`| head`): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        print(report.counts(), file=sys.stderr)
        if not writer.rows:
            raise no_rows_error(report)
    if out is not None:
        print(json.dumps({"output": str(out), "task": args.task, "rows": writer.rows, "skipped": report.skipped,
                          "input": report.file}))
    return 0


class Stopped(KeyboardInterrupt):
    """A SIGTERM turned into a KeyboardInterrupt, so that a command cleans up as on Ctrl-C (exit 143)."""

    exit_code = 128 + signal.SIGTERM


@contextlib.contextmanager
def stop_on_signals():
    """Inside the block SIGINT raises KeyboardInterrupt and SIGTERM `Stopped`, as training takes them: also when the
    process started with SIGINT ignored (a job a shell put in the background); the old handlers after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt()

    def stop(signum, frame):
        raise Stopped()
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, interrupt), signal.SIGTERM: signal.signal(signal.SIGTERM, stop)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def tqdm_write(line: str) -> None:
    """A line on standard error that does not break a progress bar."""
    from tqdm import tqdm
    tqdm.write(line, file=sys.stderr)


def cmd_pretrain_mlm(args: argparse.Namespace) -> int:
    from .config import load
    from .tools.mlm import MlmConfig, pretrain_mlm

    cfg = load(MlmConfig, args.config, args.set)
    report = pretrain_mlm(cfg, Path(args.out), args.data_dir, args.overwrite)
    print(json.dumps({"out": args.out, **report}))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .tools.sweep import is_search, sweep

    if is_search(Path(args.file)):
        from .tools.search import search

        summary = search(Path(args.file), Path(args.out), args.data_dir, args.set, args.storage, args.study,
                         args.workers, args.trials, args.worker, args.seed)
        if not args.worker:
            print(json.dumps({"out": args.out, "table": str(Path(args.out) / "search.md"), "best": summary["best"],
                              "counts": summary["counts"]}))
        return 0
    given = [flag for flag, value in (("--storage", args.storage), ("--study", args.study), ("--trials", args.trials),
                                      ("--workers", args.workers != 1), ("--seed", args.seed is not None)) if value]
    if given:
        raise ConfigError(f"{given[0]} is for a search space (a file with space:); {args.file} is a grid")
    results = sweep(Path(args.file), Path(args.out), args.data_dir, args.set)
    print(json.dumps({"out": args.out, "best": results[0]}))
    return 0


def cmd_recipe(args: argparse.Namespace) -> int:
    from .tools.recipe import recipe

    results = recipe(Path(args.file), Path(args.out), args.data_dir, args.set, args.lanes, args.lane)
    print(json.dumps({"out": args.out, "table": str(Path(args.out) / "recipe.md"),
                      "runs": {r["run"]: r["metrics"] for r in results}}))
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from .tools.ablate import ablate

    report = ablate(Path(args.file), Path(args.out), args.data_dir, args.set, args.budget, args.seeds, args.only,
                    lanes=args.lanes, lane=args.lane)
    if args.lane is not None:
        return 0  # a child of --lanes: its run's ablation_result.json is its output
    print(json.dumps({"out": args.out, "table": str(Path(args.out) / "ablation.md"),
                      "rows": {r["variant"]: {k: round(v["mean"], 4) for k, v in r["metrics"].items()}
                               for r in report["rows"]}}))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .tools.report import report

    path = report(Path(args.run_dir), args.data_dir, args.top)
    print(json.dumps({"report": str(path)}))
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from .tools.ensemble import ensemble

    metrics = ensemble([Path(r) for r in args.run_dirs], Path(args.out), args.data_dir,
                       log=lambda line: print(line, file=sys.stderr))
    print(json.dumps({"out": args.out, "dev": metrics}))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .tools.export import export

    out = export(Path(args.run_dir), Path(args.out), args.format, overwrite=args.overwrite)
    print(json.dumps({"exported": str(out), "format": args.format}))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    unknown = [p for p in args.only if p not in BENCH_PARTS]
    if unknown:
        raise ConfigError(f"--only {unknown[0]!r}: choose from {list(BENCH_PARTS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = bench(args.only, args.backbone, args.lengths, args.batch, args.reps, Path(args.runs),
                log=lambda line: print(line, file=sys.stderr))
    if args.json:
        writes.write_text(args.json, json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))
    return 0


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def add_experiments(sub, name: str, help: str, file_help: str, outputs: str, set_help: str, func):
    """A command that trains several runs from a FILE into --out DIR (sweep, recipe, ablate)."""
    p = sub.add_parser(name, help=help)
    p.add_argument("file", metavar="FILE", help=file_help)
    p.add_argument("--out", required=True, metavar="DIR", help=f"folder for the runs, {outputs}")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=set_help)
    p.add_argument("--data-dir", help="folder with the course CSV files")
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minbert", description="Multi-task fine-tuning of BERT on SST-5, Quora and STS-B.",
                                epilog="exit status: 0 done; 1 training cannot go on; 2 bad input (config, data, "
                                       "checkpoint, folder); 3 a file could not be written (the disk is full, a quota "
                                       "or ulimit -f; what was complete stays complete); 130 / 143 interrupted "
                                       "(SIGINT / SIGTERM)")
    p.add_argument("--version", action="version", version=f"minbert {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a config, evaluate on dev each epoch, write predictions")
    t.add_argument("--config", help="YAML config (default: built-in defaults, see configs/default.yaml)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. train.lr=3e-5")
    t.add_argument("--data-dir", help="folder with the course CSV files (default: $MINBERT_DATA_DIR or ../shared/data)")
    t.add_argument("--out", metavar="RUN_DIR", help="run directory (default: runs/<config name>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from RUN_DIR/last, exactly")
    t.add_argument("--force", action="store_true", help="with --resume: accept a config that differs from the run's")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the run already in RUN_DIR (deleted only once the new config, backbone and data validated)")
    t.add_argument("--check", action="store_true",
                   help="validate config, device, backbone and data (and with --resume the checkpoint), print one "
                        "JSON line and exit without creating anything")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="recompute dev metrics / write predictions from a saved run")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--split", choices=["dev", "test"], default="dev")
    e.add_argument("--data-dir", help="folder with the course CSV files (tasks whose file is absent are skipped)")
    e.add_argument("--out", metavar="DIR", help="write predictions and metrics here instead of into RUN_DIR")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("predict", help="score a sentence or pair, or every row of a file (CSV, TSV, JSONL, stdin)")
    r.add_argument("run_dir", metavar="RUN_DIR")
    r.add_argument("--task", required=True, help="one of the run's tasks")
    r.add_argument("text", nargs="*", metavar="TEXT",
                   help="one sentence (sst, cfimdb) or two (para, sts); - reads standard input")
    r.add_argument("--input", metavar="FILE", help="CSV / TSV (columns sentence, or sentence1 and sentence2; "
                   "id optional), JSONL with the same keys, or - for standard input (a text or a tab-separated pair a line)")
    r.add_argument("--output", metavar="FILE", help="CSV, or JSONL when it ends in .jsonl (default: CSV on standard output)")
    r.add_argument("--batch-size", type=int, metavar="N", help="rows per batch (default: the run's eval.batch_size)")
    r.add_argument("--strict", action="store_true", help="a bad input row is an error instead of a counted skip "
                   "(a file is checked whole before any output)")
    r.add_argument("--chunk-size", type=int, metavar="N", help=f"rows read and scored at a time (default {CHUNK_ROWS}; "
                   "memory grows with it, not with the file)")
    r.set_defaults(func=cmd_predict)

    m = sub.add_parser("pretrain-mlm", help="further masked-language-model pre-training of the encoder on in-domain text")
    m.add_argument("--config", help="YAML with the keys of MlmConfig (backbone, sources, text_files, lr, ...)")
    m.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key, e.g. max_steps=500")
    m.add_argument("--data-dir", help="folder with the course CSV files")
    m.add_argument("--out", required=True, metavar="DIR", help="where to write the encoder checkpoint")
    m.add_argument("--overwrite", action="store_true", help="replace an encoder an earlier pretrain-mlm wrote into DIR")
    m.set_defaults(func=cmd_pretrain_mlm)

    sw = add_experiments(sub, "sweep", "train a grid of config values, or search a space with Optuna (TPE, pruning), "
                         "ranked by dev score", "YAML with base (config file), set (overrides) and grid (key: [values]) "
                         "or space + search (docs/guide/search.md)", "sweep.md and sweep.json (a search: search.md, "
                         "search.json, best.yaml, figures/, study.db)", "override for every point or trial", cmd_sweep)
    sw.add_argument("--storage", metavar="URL", help="a search's study database, shared by every worker that names it "
                    "(e.g. postgresql://user:password@host/db); default: sqlite:///DIR/study.db")
    sw.add_argument("--study", metavar="NAME", help="the study's name in the database (default: FILE's name)")
    sw.add_argument("--workers", type=positive_int, default=1, metavar="N",
                    help="a search's trials N at a time, each worker a process of its own (train.threads = cores / N)")
    sw.add_argument("--trials", type=positive_int, metavar="N", help="the search's budget (default: its search.trials)")
    sw.add_argument("--seed", type=int, metavar="N", help="the sampler's seed (default: its search.seed); part of "
                    "the search, so another seed needs another --out or --study")
    sw.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # a child of --workers: trials only
    c = add_experiments(sub, "recipe", "train runs that build on each other (teachers, then a student) in order",
                        "YAML with runs: NAME: {config, set, seeds}; {run:NAME} = an earlier run's folder",
                        "recipe.md and recipe.json", "override for every run", cmd_recipe)
    c.add_argument("--lanes", type=positive_int, default=1, metavar="N",
                   help="train up to N runs at once, each in its own process (output in DIR/NAME.log), a run "
                        "starting when the runs it names are done; give each train.threads = cores / N")
    c.add_argument("--lane", help=argparse.SUPPRESS)  # the one run a child process of --lanes trains
    a = add_experiments(sub, "ablate", "train named config variants over seeds; write ablation.md and ablation.json",
                        "YAML with title, base, set, budget, seeds and variants", "ablation.md and ablation.json",
                        "override for every run", cmd_ablate)
    a.add_argument("--budget", action="store_true", help="apply the file's budget settings (a CPU-sized table)")
    a.add_argument("--seeds", type=int, metavar="N", help="use only the file's first N seeds")
    a.add_argument("--only", nargs="+", metavar="VARIANT", help="run only these variants")
    a.add_argument("--lanes", type=positive_int, default=1, metavar="N",
                   help="train up to N runs at once, each in its own process (output in DIR/VARIANT/seed-S.log); "
                        "give each train.threads = cores / N")
    a.add_argument("--lane", help=argparse.SUPPRESS)  # the one run a child process of --lanes trains

    b = sub.add_parser("bench", help="speed against transformers and against the machine (ratios in one run)")
    b.add_argument("--only", nargs="+", default=list(BENCH_PARTS),
                   metavar="PART", help=" ".join(BENCH_PARTS))
    b.add_argument("--backbone", help="BERT folder or Hub id org/name[@revision] (default all-MiniLM-L6-v2)")
    b.add_argument("--lengths", nargs="+", type=int, default=[16, 32, 64, 128])
    b.add_argument("--batch", type=int, default=32)
    b.add_argument("--reps", type=int, default=5, help="timed repetitions (median)")
    b.add_argument("--threads", type=int, help="torch CPU threads")
    b.add_argument("--runs", default="runs/bench", help="scratch folder for the training comparisons")
    b.add_argument("--json", help="also write the results here")
    b.set_defaults(func=cmd_bench)

    rp = sub.add_parser("report", help="write RUN_DIR/report/REPORT.md with figures from the dev predictions")
    rp.add_argument("run_dir", metavar="RUN_DIR")
    rp.add_argument("--top", type=int, default=5, help="most confident errors listed per task")
    rp.add_argument("--data-dir", help="folder with the course CSV files")
    rp.set_defaults(func=cmd_report)

    en = sub.add_parser("ensemble", help="average several runs' probabilities / scores; write metrics and predictions")
    en.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    en.add_argument("--out", required=True, metavar="DIR")
    en.add_argument("--data-dir", help="folder with the course CSV files")
    en.set_defaults(func=cmd_ensemble)

    ex = sub.add_parser("export", help="the encoder (and heads) as a Hugging Face or sentence-transformers folder")
    ex.add_argument("run_dir", metavar="RUN_DIR")
    ex.add_argument("--format", choices=["hf", "sentence-transformers"], default="hf")
    ex.add_argument("--out", required=True, metavar="DIR")
    ex.add_argument("--overwrite", action="store_true", help="replace the files of an earlier export in DIR")
    ex.set_defaults(func=cmd_export)
    return p


def one_line(error: Exception) -> str:
    """An error message on one line, whatever it quotes (a path or a value may hold line breaks)."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(error))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "predict" and not any(e.startswith("-") and e != "-" for e in extra):
        args.text += extra  # TEXT after --task: argparse gives a '*' positional nothing once RUN_DIR is read
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except WriteError as e:  # a file could not be written: nothing complete was lost
        print(f"minbert: error: {one_line(e)}", file=sys.stderr)
        return WRITE_FAILED
    except EXPECTED_ERRORS as e:
        print(f"minbert: error: {one_line(e)}", file=sys.stderr)
        return 2
    except TrainingError as e:
        print(f"minbert: error: {one_line(e)}", file=sys.stderr)
        return 1
    except TrainingInterrupted as e:  # SIGINT / SIGTERM: the run paused with last/ saved
        print(f"minbert: {e.message()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:  # Ctrl-C, or a signal turned into one (`stop_on_signals`)
        print("minbert: interrupted", file=sys.stderr)
        return getattr(e, "exit_code", 130)


if __name__ == "__main__":
    sys.exit(main())

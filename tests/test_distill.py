"""Distillation (training/distill.py): the soft losses against their closed forms, the annealed mix at lambda 0
and 1, cached teacher outputs against a fresh Predictor's, a killed distilled run resumed bit-identical, and
each bad teacher a one-line error before the run folder exists."""
from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import minbert
from minbert.schema import load_config
from minbert.training.distill import DistillSettings as DistillConfig
from minbert.data.loading import rows_fingerprint
from minbert.errors import ConfigError
from minbert.tasks import COURSE_TASKS

WIDTHS = {n: t.num_outputs for n, t in COURSE_TASKS.items()}  # each task's outputs per row
from minbert.training.distill import CACHE, PARTS, Distiller, Teacher, parts_of, score_shared, weights_identity
from test_resume import progress, signal_when, weights

REPO = Path(__file__).resolve().parents[1]


def minbert_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "minbert", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def tiny_args(out: Path, backbone: Path, data: Path, tasks: str, *extra: str) -> list[str]:
    return ["train", "--data-dir", str(data), "--out", str(out), "--set", f"model.backbone={backbone}",
            "--set", f"tasks={tasks}", "--set", "train.epochs=2", "--set", "train.schedule.steps_per_epoch=8",
            "--set", "train.batch_size={sst: 4, para: 4, sts: 4}", "--set", "train.threads=1",
            "--set", "eval.test_predictions=false", "--set", "train.checkpoint_every=1", *extra]


# ---- the losses, on their own ----
def test_soft_losses_match_their_closed_forms():
    torch.manual_seed(0)
    student, teacher, t = torch.randn(6, 5), torch.randn(6, 5), 2.5
    kind = COURSE_TASKS["sst"].kind
    p = torch.exp(teacher / t) / torch.exp(teacher / t).sum(-1, keepdim=True)
    q = torch.exp(student / t) / torch.exp(student / t).sum(-1, keepdim=True)
    assert torch.allclose(kind.soft_target(teacher, t), p)
    assert torch.allclose(kind.soft_loss(student, p, t), -(p * q.log()).sum(-1).mean() * t * t)
    s, z = torch.randn(6), torch.randn(6)
    pb, qb = 1 / (1 + torch.exp(-z / t)), 1 / (1 + torch.exp(-s / t))
    binary = COURSE_TASKS["para"].kind
    assert torch.allclose(binary.soft_loss(s, binary.soft_target(z, t), t),
                          -(pb * qb.log() + (1 - pb) * (1 - qb).log()).mean() * t * t, atol=1e-6)
    scores = torch.rand(6) * 5
    assert torch.allclose(COURSE_TASKS["sts"].kind.soft_loss(s, COURSE_TASKS["sts"].kind.soft_target(scores, t), t),
                          ((s - scores) ** 2).mean())


def distiller(anneal="linear", gold_weight=0.0, temperature=1.0, total=10, teachers=None, masks=None):
    outs = teachers if teachers is not None else torch.randn(1, 8, 5)
    mask = masks if masks is not None else torch.ones(outs.shape[:2], dtype=torch.bool)
    cfg = DistillConfig(teachers={"sst": ["t"]}, temperature=temperature, anneal=anneal, gold_weight=gold_weight)
    return Distiller(cfg, {"sst": COURSE_TASKS["sst"]}, {"sst": outs}, {"sst": mask}, total)


def test_the_annealed_target_at_lambda_0_and_1():
    torch.manual_seed(1)
    d = distiller(total=10)
    out, gold = torch.randn(3, 5), torch.tensor([0, 4, 2])
    index = [5, 0, 7]
    gold_loss = F.cross_entropy(out, gold)
    teacher_p = torch.softmax(d.targets["sst"].log(), -1)[index]  # the teacher's own probabilities
    assert d.gold_weight(0) == 0.0 and d.gold_weight(5) == 0.5 and d.gold_weight(10) == 1.0
    assert torch.equal(d.loss("sst", out, index, gold_loss, 10), gold_loss)  # lambda 1: the gold label alone
    at0 = d.loss("sst", out, index, gold_loss, 0)  # lambda 0: the teacher alone
    assert torch.allclose(at0, -(teacher_p * F.log_softmax(out, -1)).sum(-1).mean())
    # in between (T = 1) the mixed losses' gradient is the cross-entropy's against the mixed target: softmax - target
    x = out.clone().requires_grad_()
    d.loss("sst", x, index, F.cross_entropy(x, gold), 3).backward()
    target = 0.3 * F.one_hot(gold, 5) + 0.7 * teacher_p
    assert torch.allclose(x.grad, (torch.softmax(out, -1) - target) / 3, atol=1e-6)
    constant = distiller("constant", gold_weight=0.25)
    assert constant.gold_weight(0) == constant.gold_weight(99) == 0.25
    assert torch.equal(distiller("constant", gold_weight=1.0).loss("sst", out, index, gold_loss, 0), gold_loss)


def test_an_ensemble_teacher_averages_probabilities_over_the_teachers_that_count():
    logits = torch.randn(3, 4, 5)
    mask = torch.tensor([[1, 1, 0, 1], [1, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    d = distiller(teachers=logits, masks=mask, temperature=2.0)
    p = torch.softmax(logits / 2.0, -1)
    for row in range(4):
        who = mask[:, row]
        assert torch.allclose(d.targets["sst"][row], p[who, row].mean(0))


def test_distill_settings_are_validated():
    with pytest.raises(ConfigError, match="train.distill.teachers: 'para' is not an enabled task"):
        load_config(None, ["tasks=[sst]", "train.distill.teachers={para: [x]}"])
    with pytest.raises(ConfigError, match="train.distill.teachers.sst: name at least one"):
        load_config(None, ["train.distill.teachers={sst: []}"])
    with pytest.raises(ConfigError, match="train.distill.teachers.sts: train.schedule draws no sts training batch"):
        load_config(None, ["train.schedule.name=random_subset", "train.schedule.subset_size={sts: 0}",
                           "train.distill.teachers={sst: [x], sts: [y]}"])
    load_config(None, ["train.schedule.name=random_subset", "train.schedule.subset_size={sts: 0}",
                       "train.distill.teachers={sst: [x]}"])  # a teacher for a task that is trained: fine
    with pytest.raises(ConfigError, match="train.distill.temperature: must be positive"):
        load_config(None, ["train.distill.temperature=0"])
    with pytest.raises(ConfigError, match=r"train.distill.gold_weight: must be in \[0, 1\]"):
        load_config(None, ["train.distill.gold_weight=1.5"])
    with pytest.raises(ConfigError, match="train.distill.anneal"):
        load_config(None, ["train.distill.anneal=cosine"])
    with pytest.raises(ConfigError, match="data.fold: set data.folds and data.fold together"):
        load_config(None, ["data.folds=5"])
    with pytest.raises(ConfigError, match=r"data.fold: must be below data.folds \(3\)"):
        load_config(None, ["data.folds=3", "data.fold=3"])


# ---- end to end, with a tiny BERT ----
@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_backbone, small_data_dir) -> Path:
    run = tmp_path_factory.mktemp("teacher") / "run"
    minbert_cli(*tiny_args(run, tiny_backbone, small_data_dir, "[sst, sts]", "--set", "train.seed=5"))
    return run


def student_args(out, backbone, data, teacher, *extra):
    return tiny_args(out, backbone, data, "[sst, para, sts]", "--set", f"train.distill.teachers={{sst: [{teacher}], sts: [{teacher}]}}",
                     "--set", "train.distill.temperature=2.0", "--set", "train.combine.name=pcgrad",  # per-task backward
                     *extra)


@pytest.fixture(scope="module")
def student(tmp_path_factory, tiny_backbone, small_data_dir, teacher) -> Path:
    run = tmp_path_factory.mktemp("student") / "run"
    minbert_cli(*student_args(run, tiny_backbone, small_data_dir, teacher))
    return run


def test_cached_teacher_outputs_equal_a_fresh_predictors(student, teacher, small_data_dir):
    cache = load_file(str(student / CACHE))
    predictor = minbert.load(teacher)
    for task, column in (("sst", "sentence"), ("sts", None)):
        examples, _ = COURSE_TASKS[task].read(small_data_dir, "train")
        texts = [e.texts[0] if column else e.texts for e in examples]
        fresh = torch.as_tensor(predictor.predict(task, texts).outputs)
        assert cache[f"{task}.outputs"].shape == (1, *fresh.shape)
        assert torch.allclose(cache[f"{task}.outputs"][0], fresh, atol=1e-5)  # other batches: other padding
        assert cache[f"{task}.mask"].bool().all()
    assert "para.outputs" not in cache  # no teacher: para learns from its labels alone
    assert not (student / PARTS).exists()  # the outputs shared with siblings while scoring go when the run ends
    saved = load_config(student / "config.yaml")
    assert saved.train.distill.teachers == {"sst": [str(teacher)], "sts": [str(teacher)]}
    assert len(saved.train.distill.identities["sst"][0]) == 16


def test_the_student_learns_from_the_teacher(student, tiny_backbone, small_data_dir, tmp_path):
    """The same run without teachers ends with other weights: the mixed loss reached the gradients."""
    plain = tmp_path / "plain"
    minbert_cli(*tiny_args(plain, tiny_backbone, small_data_dir, "[sst, para, sts]"))
    a, b = weights(plain / "best"), weights(student / "best")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    losses = [json.loads(line)["train_loss"] for line in (student / "metrics.jsonl").read_text().splitlines()]
    assert all(all(v == v for v in epoch.values()) for epoch in losses)


def test_a_killed_distilled_run_resumes_bit_identical(student, teacher, tmp_path, tiny_backbone, small_data_dir):
    target = random.Random().randint(1, 14)  # a random point of the 2 x 8 steps
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "minbert", *student_args(run, tiny_backbone, small_data_dir, teacher)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    signal_when(proc, lambda: (progress(run)[0] - 1) * 8 + progress(run)[1] >= target)
    proc.wait()
    assert not (run / "best_metrics.json").exists()
    minbert_cli("train", "--resume", str(run))
    ref, got = weights(student / "best"), weights(run / "best")
    assert all(torch.equal(ref[k], got[k]) for k in ref), f"weights differ after a kill at step ~{target}"
    assert (run / "metrics.jsonl").read_text().count("\n") == 2
    assert "teacher outputs read from" in (run / "log.txt").read_text()


def test_a_teacher_retrained_since_is_refused_on_resume(student, teacher, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(student, run)
    cfg = (run / "config.yaml").read_text()
    moved = tmp_path / "teacher"
    shutil.copytree(teacher, moved)
    (run / "config.yaml").write_text(cfg.replace(str(teacher), str(moved)))
    heads = load_file(str(moved / "best" / "heads.safetensors"))
    from safetensors.torch import save_file
    save_file({k: v + 1 for k, v in heads.items()}, str(moved / "best" / "heads.safetensors"))
    proc = minbert_cli("train", "--resume", str(run), check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "train.distill.identities: the teachers' weights are not the ones this config names" in proc.stderr


@pytest.mark.parametrize("case", ["missing", "not a run", "wrong task", "other rows", "no out-of-fold teacher"])
def test_a_bad_teacher_is_a_one_line_error_before_the_run(case, teacher, tiny_backbone, small_data_dir, tmp_path):
    folder, data, extra = teacher, small_data_dir, []
    if case == "missing":
        folder, expected = tmp_path / "nowhere", "no config.yaml"
    elif case == "not a run":
        folder = tmp_path / "empty"
        folder.mkdir()
        expected = "not a run directory"
    elif case == "wrong task":
        extra, expected = ["--set", f"train.distill.teachers={{para: [{teacher}]}}"], "was trained on sst, sts, not para"
    elif case == "other rows":
        data = tmp_path / "data"
        shutil.copytree(small_data_dir, data)
        lines = (data / "ids-sst-train.csv").read_text().splitlines(keepends=True)
        (data / "ids-sst-train.csv").write_text("".join(lines[:-3]))
        expected = "was trained on other sst rows (64 rows"
    else:
        extra, expected = ["--set", "train.distill.out_of_fold=true"], "were in every teacher's training data"
    out = tmp_path / "student"
    args = tiny_args(out, tiny_backbone, data, "[sst, para, sts]",
                     "--set", f"train.distill.teachers={{sst: [{folder}]}}", *extra)
    proc = minbert_cli(*args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("minbert: error: train.distill.") and proc.stderr.count("\n") == 1, proc.stderr
    assert expected in proc.stderr
    assert not out.exists()


def test_out_of_fold_teachers_each_score_the_fold_they_did_not_see(tiny_backbone, small_data_dir, tmp_path):
    folds = []
    for k in range(2):
        folds.append(tmp_path / f"fold{k}")
        minbert_cli(*tiny_args(folds[-1], tiny_backbone, small_data_dir, "[sst]", "--set", "train.epochs=1",
                               "--set", "data.folds=2", "--set", f"data.fold={k}"))
    out = tmp_path / "student"
    minbert_cli(*tiny_args(out, tiny_backbone, small_data_dir, "[sst]", "--set", "train.epochs=1",
                           "--set", f"train.distill.teachers={{sst: [{folds[0]}, {folds[1]}]}}",
                           "--set", "train.distill.out_of_fold=true"))
    mask = load_file(str(out / CACHE))["sst.mask"].bool()
    assert mask.shape == (2, 64) and torch.equal(mask[0], ~mask[1])  # each row from exactly one teacher
    ids = [e.id for e in COURSE_TASKS["sst"].read(small_data_dir, "train")[0]]
    for k in range(2):  # teacher k scores the rows it did not train on: its recorded training rows are the others
        recorded = json.loads((folds[k] / "last" / "trainer_state.json").read_text())["data"]["sst"]
        assert recorded == rows_fingerprint([i for i, seen in zip(ids, mask[k].tolist()) if not seen])
        assert 20 <= int(mask[k].sum()) <= 44


def test_another_seed_reads_the_teacher_outputs_of_a_sibling_run(student, teacher, tiny_backbone, small_data_dir):
    """A student's second seed beside the first (a recipe's NAME-SEED folders) takes the teachers' outputs from
    the first one's file (same teachers, same rows) instead of scoring the rows again, and keeps a copy."""
    second = student.parent / "seed-2"
    minbert_cli(*student_args(second, tiny_backbone, small_data_dir, teacher, "--set", "train.seed=2"))
    log = (second / "log.txt").read_text()
    assert f"teacher outputs read from {student / CACHE} (the same teachers and training rows)" in log
    assert "scored" not in log
    a, b = load_file(str(student / CACHE)), load_file(str(second / CACHE))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = student.parent / "other-teachers"  # a sibling with other teachers is not read
    minbert_cli(*tiny_args(other, tiny_backbone, small_data_dir, "[sst, para, sts]", "--set",
                           f"train.distill.teachers={{sst: [{teacher}]}}"))
    assert "scored" in (other / "log.txt").read_text()


def test_a_student_trains_the_same_whether_its_teacher_outputs_were_scored_or_read(student, teacher, tiny_backbone,
                                                                                 small_data_dir):
    """Scoring the teachers builds their models (random init, then their weights): that must not move the
    student's random stream, or its dropout masks would differ between a first run and one reading a cache."""
    again = student.parent / "same-seed"
    minbert_cli(*student_args(again, tiny_backbone, small_data_dir, teacher))
    assert "teacher outputs read from" in (again / "log.txt").read_text()
    assert "scored" in (student / "log.txt").read_text()
    a, b = weights(student / "best"), weights(again / "best")
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---- sibling runs share the scoring ----
HOLDER = """
import sys, time
from pathlib import Path
from minbert.run_folder import acquire
acquire(Path(sys.argv[1]))
print("held", flush=True)
while not Path(sys.argv[2]).exists():
    time.sleep(0.02)
"""


def sibling_scoring(claim: Path, until: Path) -> subprocess.Popen:
    """Another process holding the claim on an output (a sibling seed scoring it) until the file `until` exists."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(claim), str(until)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def sst_part(teacher, data):
    rows = {"sst": COURSE_TASKS["sst"].read(data, "train")[0]}
    t = Teacher("sst", teacher, weights_identity(teacher / "best"), None)
    return parts_of({"sst": [t]}, rows, False), rows


def predictor_outputs(teacher, data) -> torch.Tensor:
    examples, _ = COURSE_TASKS["sst"].read(data, "train")
    return torch.as_tensor(minbert.load(teacher).predict("sst", [e.texts[0] for e in examples]).outputs)


def wait_for(lines: list[str], text: str) -> None:
    for _ in range(400):
        if any(text in line for line in lines):
            return
        time.sleep(0.05)


def test_a_run_waits_for_the_output_a_live_sibling_is_scoring_and_reads_it(teacher, small_data_dir, tmp_path):
    """Two seeds started at once: while a sibling process holds the claim on a teacher's outputs, the run scores
    nothing and waits; it then takes the sibling's file (here marked, so reading and scoring cannot be confused)."""
    parts, rows = sst_part(teacher, small_data_dir)
    own, sibling = tmp_path / "student-2" / PARTS, tmp_path / "student-1" / PARTS
    own.parent.mkdir()
    proc = sibling_scoring(sibling / f"{parts[0].name}.claim", tmp_path / "done")
    lines, result = [], {}
    waiter = threading.Thread(target=lambda: result.update(
        score_shared(parts, rows, own, torch.device("cpu"), 16, lines.append, WIDTHS, poll=0.05)))
    waiter.start()
    wait_for(lines, "waiting")
    assert any("waiting for 1 teacher output" in line for line in lines), lines
    marked = predictor_outputs(teacher, small_data_dir) + 1000.0
    save_file({"outputs": marked}, str(sibling / f"{parts[0].name}.safetensors"), metadata={"key": parts[0].key})
    (tmp_path / "done").touch()
    proc.wait(timeout=60)
    waiter.join(timeout=60)
    assert not waiter.is_alive()
    assert torch.equal(result[parts[0].name], marked)
    assert not any("scored" in line for line in lines)
    assert not (own / f"{parts[0].name}.safetensors").exists()


def test_a_killed_siblings_claim_is_taken_over(teacher, small_data_dir, tmp_path):
    """A sibling killed (SIGKILL) while it scored leaves its claim folder behind but not its lock: the run does
    not wait for it; it scores the outputs itself, equal to a fresh Predictor's, and leaves them for the others."""
    parts, rows = sst_part(teacher, small_data_dir)
    own, sibling = tmp_path / "student-2" / PARTS, tmp_path / "student-1" / PARTS
    own.parent.mkdir()
    proc = sibling_scoring(sibling / f"{parts[0].name}.claim", tmp_path / "never")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert (sibling / f"{parts[0].name}.claim").is_dir()
    lines = []
    got = score_shared(parts, rows, own, torch.device("cpu"), 16, lines.append, WIDTHS, poll=0.05)[parts[0].name]
    assert any("scored 64 sst training rows" in line for line in lines), lines
    assert not any("waiting" in line for line in lines)
    assert torch.allclose(got, predictor_outputs(teacher, small_data_dir), atol=1e-5)
    assert torch.equal(load_file(str(own / f"{parts[0].name}.safetensors"))["outputs"], got)
    assert not (own / f"{parts[0].name}.claim").exists()


def test_a_sibling_that_starts_a_moment_later_is_seen_at_the_next_output(teacher, small_data_dir, tmp_path):
    """Two seeds started together create their parts folders at about the same moment: a sibling whose folder
    appears while this run scores its first output must be seen before the second one is scored (on the full
    data both seeds once scored every output because the folders were listed once per pass)."""
    rows = {n: COURSE_TASKS[n].read(small_data_dir, "train")[0] for n in ("sst", "sts")}
    t = {n: Teacher(n, teacher, weights_identity(teacher / "best"), None) for n in rows}
    parts = parts_of({n: [t[n]] for n in rows}, rows, False)
    own, sibling = tmp_path / "student-2" / PARTS, tmp_path / "student-1" / PARTS
    own.parent.mkdir()
    lines, procs, result = [], [], {}

    def log(line: str) -> None:
        lines.append(line)
        if "scored" in line and not procs:  # the sibling starts now and claims the second output
            procs.append(sibling_scoring(sibling / f"{parts[1].name}.claim", tmp_path / "done"))

    waiter = threading.Thread(target=lambda: result.update(
        score_shared(parts, rows, own, torch.device("cpu"), 16, log, WIDTHS, poll=0.05)))
    waiter.start()
    wait_for(lines, "waiting")
    assert sum("scored" in line for line in lines) == 1 and any("waiting for 1" in line for line in lines), lines
    marked = torch.full((len(rows["sts"]),), 7.0)
    save_file({"outputs": marked}, str(sibling / f"{parts[1].name}.safetensors"), metadata={"key": parts[1].key})
    (tmp_path / "done").touch()
    procs[0].wait(timeout=60)
    waiter.join(timeout=60)
    assert not waiter.is_alive() and torch.equal(result[parts[1].name], marked)


@pytest.mark.parametrize("overwrite", [False, True], ids=["new", "overwrite"])
def test_a_run_that_is_its_own_teacher_is_refused_before_anything_changes(teacher, tiny_backbone, small_data_dir,
                                                                          tmp_path, overwrite):
    """`--out RUN --overwrite` with RUN among its own teachers would delete the teacher while its outputs train the
    student: a one-line error, and the teacher's files are untouched."""
    run = tmp_path / "run"
    shutil.copytree(teacher, run)
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    args = tiny_args(run, tiny_backbone, small_data_dir, "[sst, sts]",
                     "--set", f"train.distill.teachers={{sst: [{run}], sts: [{run / 'best'}]}}",
                     *(["--overwrite"] if overwrite else []))
    proc = minbert_cli(*args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("minbert: error: train.distill.teachers.sst[0]: ") and proc.stderr.count("\n") == 1
    assert "is the run being written" in proc.stderr
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before

"""`minbert recipe`: a teacher then its students from one command; stopped by a real SIGINT and rerun, it continues
where it stopped and trains nothing twice."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from minbert.cli import main
from minbert.errors import ConfigError
from minbert.schema import load_config
from minbert.tools.recipe import read_recipe
from test_resume import progress, signal_when

REPO = Path(__file__).resolve().parents[1]


def write_recipe(folder: Path, backbone: Path) -> Path:
    common = (f"model: {{backbone: {backbone}}}\ntrain:\n  epochs: 2\n  threads: 1\n  checkpoint_every: 1\n"
              "  schedule: {until: fixed_steps, steps_per_epoch: 6}\n  batch_size: {sst: 4, para: 4, sts: 4}\n"
              "eval: {test_predictions: false}\n")
    (folder / "teacher.yaml").write_text("tasks: [sst]\n" + common)
    (folder / "student.yaml").write_text("tasks: [sst, sts]\n" + common)
    recipe = folder / "recipe.yaml"
    recipe.write_text("runs:\n  teacher: {config: teacher.yaml}\n  student:\n    config: student.yaml\n"
                      "    set: ['train.distill.teachers={sst: [{run:teacher}]}']\n    seeds: [1, 2]\n")
    return recipe


def stamp(run: Path) -> int:
    return (run / "best" / "heads.safetensors").stat().st_mtime_ns


def test_a_recipe_trains_the_teacher_then_its_students_and_continues_after_a_stop(tmp_path, tiny_backbone,
                                                                                  small_data_dir):
    recipe, out = write_recipe(tmp_path, tiny_backbone), tmp_path / "out"
    args = [sys.executable, "-m", "minbert", "recipe", str(recipe), "--out", str(out), "--data-dir", str(small_data_dir)]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    signal_when(proc, lambda: progress(out / "student-1")[1] >= 3, signal.SIGINT)  # in the first student
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "rerun the same minbert recipe command to continue" in err and "Traceback" not in err
    teacher_done = stamp(out / "teacher")

    again = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "recipe: teacher done before" in again.stderr and "continuing it from" in again.stderr
    assert stamp(out / "teacher") == teacher_done  # not trained twice
    results = json.loads((out / "recipe.json").read_text())
    assert [r["run"] for r in results] == ["teacher", "student-1", "student-2"]
    for r in results:
        assert r["metrics"] == json.loads((out / r["run"] / "best_metrics.json").read_text())
    student = load_config(out / "student-2" / "config.yaml")
    assert student.train.seed == 2 and student.train.distill.teachers == {"sst": [str((out / "teacher").resolve())]}
    assert (out / "student-1" / "teacher_outputs.safetensors").is_file()
    assert (out / "recipe.md").read_text().count("\n| ") == 4

    # once more: everything is done, nothing is trained
    stamps = {r["run"]: stamp(out / r["run"]) for r in results}
    assert main(["recipe", str(recipe), "--out", str(out), "--data-dir", str(small_data_dir)]) == 0
    assert stamps == {r: stamp(out / r) for r in stamps}


def test_lanes_train_independent_runs_side_by_side_and_pause_on_one_sigint(tmp_path, tiny_backbone, small_data_dir):
    """Two teachers at once, then their student; SIGINT while both teachers train pauses both (one signal to
    the recipe, passed on to each); the rerun ends with the metrics that one lane gives."""
    recipe, out = write_recipe(tmp_path, tiny_backbone), tmp_path / "out"
    teacher = (tmp_path / "teacher.yaml").read_text().replace("steps_per_epoch: 6", "steps_per_epoch: 40")
    (tmp_path / "teacher.yaml").write_text(teacher)  # long enough that both are surely running at once
    (tmp_path / "teacher-sts.yaml").write_text(teacher.replace("[sst]", "[sts]"))
    recipe.write_text("runs:\n  teacher: {config: teacher.yaml}\n  teacher-sts: {config: teacher-sts.yaml}\n"
                      "  student:\n    config: student.yaml\n"
                      "    set: ['train.distill.teachers={sst: [{run:teacher}], sts: [{run:teacher-sts}]}']\n")
    args = [sys.executable, "-m", "minbert", "recipe", str(recipe), "--data-dir", str(small_data_dir)]
    lanes = [*args, "--out", str(out), "--lanes", "2"]
    proc = subprocess.Popen(lanes, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    def steps(run: Path) -> int:
        epoch, step = progress(run)
        return max(0, epoch - 1) * 40 + step

    signal_when(proc, lambda: min(steps(out / "teacher"), steps(out / "teacher-sts")) >= 2, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "teacher, teacher-sts paused" in err and "rerun the same minbert recipe command" in err, err
    for name in ("teacher", "teacher-sts"):  # each child paused at a step with its checkpoint, not killed
        assert "interrupted at epoch" in (out / f"{name}.log").read_text()
        assert not (out / name / "best_metrics.json").exists()  # paused part way
    assert not (out / "student").exists()

    again = subprocess.run(lanes, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "continuing it from" in (out / "teacher.log").read_text()
    teachers_done = max((out / n / "recipe_result.json").stat().st_mtime_ns for n in ("teacher", "teacher-sts"))
    assert (out / "student" / "config.yaml").stat().st_mtime_ns > teachers_done  # the student waited for both

    settled = subprocess.run(lanes, cwd=REPO, capture_output=True, text=True, timeout=600)  # all done: no child
    assert settled.returncode == 0 and settled.stderr.count("done before") == 3, settled.stderr
    assert "lanes: started" not in settled.stderr

    one = subprocess.run([*args, "--out", str(tmp_path / "one")], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    assert json.loads((out / "recipe.json").read_text()) and [
        r["metrics"] for r in json.loads((out / "recipe.json").read_text())] == [
        r["metrics"] for r in json.loads((tmp_path / "one" / "recipe.json").read_text())]


def test_a_reference_to_a_later_run_fails_before_any_run(tmp_path, tiny_backbone, capsys):
    recipe = write_recipe(tmp_path, tiny_backbone)
    recipe.write_text(recipe.read_text().replace("{run:teacher}", "{run:student}"))
    assert main(["recipe", str(recipe), "--out", str(tmp_path / "out")]) == 2
    assert "runs.student: {run:student} names no run before this one" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_each_shipped_recipe_reads(path, tmp_path):
    runs = read_recipe(path, tmp_path, [])
    assert runs and len({run.name for run in runs}) == len(runs)


@pytest.mark.parametrize("path", sorted([*(REPO / "configs" / "single").glob("*.yaml"),
                                         *(REPO / "configs" / "distill").glob("*.yaml")]), ids=lambda p: p.name)
def test_each_single_task_and_student_config_loads(path):
    assert load_config(path).tasks


def test_more_seeds_train_only_for_a_run_that_beats_its_bar(tmp_path, tiny_backbone, small_data_dir):
    """`more_seeds` trains the extra seeds of a run whose first seed's dev overall is above the bar file's, and
    skips them (a row saying why) for one that is not; the comparison is made again at a rerun."""
    write_recipe(tmp_path, tiny_backbone)
    (tmp_path / "all.yaml").write_text((tmp_path / "teacher.yaml").read_text().replace("tasks: [sst]", "tasks: [sst, para, sts]"))
    (tmp_path / "low.json").write_text('{"overall": 0.0}')
    (tmp_path / "high.json").write_text('{"overall": 1.0}')
    recipe = tmp_path / "more.yaml"
    recipe.write_text("runs:\n"
                      "  good: {config: all.yaml, seeds: [1], more_seeds: {seeds: [2], above: low.json}}\n"
                      "  poor: {config: all.yaml, seeds: [3], more_seeds: {seeds: [4], above: high.json}}\n")
    out = tmp_path / "out"
    args = ["recipe", str(recipe), "--out", str(out), "--data-dir", str(small_data_dir), "--set", "train.epochs=1"]
    assert main(args) == 0
    results = {r["run"]: r for r in json.loads((out / "recipe.json").read_text())}
    assert list(results) == ["good-1", "good-2", "poor-3", "poor-4"]
    assert load_config(out / "good-2" / "config.yaml").train.seed == 2
    overall = results["poor-3"]["metrics"]["overall"]
    assert results["poor-4"]["skipped"].startswith(f"poor-3's dev overall {overall:.4f} is not above 1.0000")
    assert not (out / "poor-4").exists() and "| poor-4 | skipped: poor-3's dev overall" in (out / "recipe.md").read_text()

    (tmp_path / "high.json").write_text('{"overall": 0.0}')  # the bar moved: poor's seed 4 is now worth it
    assert main(args) == 0
    assert "skipped" not in json.loads((out / "recipe.json").read_text())[3] and (out / "poor-4" / "best").is_dir()


@pytest.mark.parametrize("more, message", [
    ("{seeds: [2]}", r"more_seeds: expected \{seeds"),
    ("{seeds: [2], above: none.json}", r"more_seeds.above: .*none.json holds no readable dev overall"),
    ("{seeds: [1, 2], above: low.json}", r"runs.a: seed 1 is given twice"),
])
def test_more_seeds_are_checked_before_any_run(tmp_path, tiny_backbone, more, message):
    write_recipe(tmp_path, tiny_backbone)
    (tmp_path / "low.json").write_text('{"overall": 0.0}')
    recipe = tmp_path / "more.yaml"
    recipe.write_text(f"runs:\n  a: {{config: teacher.yaml, seeds: [1], more_seeds: {more}}}\n")
    with pytest.raises(ConfigError, match=message):
        read_recipe(recipe, tmp_path / "out", [])


def test_seed_in_a_set_value_names_the_same_seeds_run(tmp_path, tiny_backbone, capsys):
    recipe = write_recipe(tmp_path, tiny_backbone)
    recipe.write_text(recipe.read_text() + "  finish:\n    config: student.yaml\n"
                      "    set: ['train.init_from={run:student-{seed}}']\n    seeds: [1, 2]\n")
    runs = {r.name: r for r in read_recipe(recipe, tmp_path / "out", [])}
    for seed in (1, 2):
        finish = runs[f"finish-{seed}"]
        assert finish.needs == {f"student-{seed}"} and finish.cfg.train.seed == seed
        assert finish.cfg.train.init_from == str((tmp_path / "out" / f"student-{seed}").resolve())
    recipe.write_text(recipe.read_text().removesuffix("    seeds: [1, 2]\n"))  # the finish runs' seeds
    assert main(["recipe", str(recipe), "--out", str(tmp_path / "out")]) == 2
    assert "{seed} stands for the run's seed, and this run has no seeds" in capsys.readouterr().err

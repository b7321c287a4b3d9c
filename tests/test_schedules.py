"""Each schedule: how many examples of each task one epoch yields, checked against its definition."""
from __future__ import annotations

import math

import pytest

from minbert.errors import ConfigError
from minbert.schema import load_config
from minbert.settings import CHOICES


def ScheduleConfig(name, **settings):
    return CHOICES["train.schedule"][name](**settings)
from minbert.schedules import SCHEDULES, TaskSizes, build_schedule, expected_examples, total_steps

# the course's training-set sizes, and batch sizes with a larger one for Quora
SIZES = TaskSizes({"sst": 8544, "para": 55814, "sts": 6040}, {"sst": 16, "para": 64, "sts": 16})
BATCHES = {"sst": 534, "para": 873, "sts": 378}  # ceil(size / batch size)


def plan(name: str, epoch: int = 1, epochs: int = 3, **cfg):
    return build_schedule(ScheduleConfig(name=name, **cfg), SIZES, epochs, seed=7).plan(epoch)


def examples(p) -> dict[str, int]:
    return expected_examples(p, SIZES.batch_size)


def test_batches_per_pass():
    assert {t: SIZES.batches(t) for t in SIZES.tasks} == BATCHES


@pytest.mark.parametrize("until,steps", [("longest", 873), ("shortest", 378)])
def test_round_robin_over_and_under_sampling(until, steps):
    p = plan("round_robin", until=until)
    assert len(p) == steps and all(sorted(s) == ["para", "sst", "sts"] for s in p)
    assert examples(p) == {"sst": steps * 16, "para": steps * 64, "sts": steps * 16}


def test_round_robin_fixed_steps():
    assert len(plan("round_robin", until="fixed_steps", steps_per_epoch=100)) == 100
    with pytest.raises(ConfigError, match="train.schedule.until: fixed_steps needs"):  # refused by validation
        load_config(None, ["train.schedule.until=fixed_steps"])


def test_sequential_passes_each_task_once_in_order():
    p = plan("sequential")
    assert examples(p) == {"sst": 534 * 16, "sts": 378 * 16, "para": 873 * 64}
    assert p[0] == ["sst"] and p[534] == ["sts"] and p[534 + 378] == ["para"] and len(p) == 534 + 378 + 873
    assert plan("sequential", order=["para", "sst", "sts"])[0] == ["para"]


def test_task_by_task_trains_one_task_for_n_epochs():
    tasks = [plan("task_by_task", epoch=e, epochs=6, epochs_per_task=2)[0][0] for e in range(1, 7)]
    assert tasks == ["sst", "sst", "sts", "sts", "para", "para"]
    assert examples(plan("task_by_task", epoch=5, epochs=6, epochs_per_task=2)) == {"para": 873 * 64}


def test_random_subset_draws_n_of_the_large_task_and_passes_the_others_once():
    p = plan("random_subset", subset_size={"para": 12800})
    assert examples(p) == {"sst": 534 * 16, "sts": 378 * 16, "para": 12800}
    assert len(p) == 534  # the longest quota; the others spread evenly over it
    first_half = examples(p[:267])
    assert abs(first_half["para"] - 6400) <= 64 and abs(first_half["sts"] - 378 * 8) <= 16


def test_random_subset_over_samples_a_task_asked_for_more_than_it_holds():
    # SST's 8,544 rows twice (1,068 batches of 16: the longest quota sets the epoch), 44,800 Quora pairs
    p = plan("random_subset", subset_size={"sst": 2 * 8544, "para": 44800, "sts": 3200})
    assert len(p) == 1068 and all(step.count("sst") == 1 for step in p)
    assert examples(p) == {"sst": 1068 * 16, "para": 700 * 64, "sts": 200 * 16}


@pytest.mark.parametrize("name,cfg,alpha", [
    ("proportional", {}, 1.0),
    ("temperature", {"temperature": 3.0}, 1 / 3),
    ("annealed", {}, 0.5),  # epoch 1 of 3: alpha_start
])
def test_sampled_schedules_follow_size_to_the_alpha(name, cfg, alpha):
    schedule = build_schedule(ScheduleConfig(name=name, steps_per_epoch=20000, **cfg), SIZES, 3, seed=7)
    weights = {t: n ** alpha for t, n in SIZES.examples.items()}
    expected = {t: w / sum(weights.values()) for t, w in weights.items()}
    assert schedule.probabilities(1) == pytest.approx(expected)
    p = schedule.plan(1)
    assert all(len(s) == 1 for s in p) and len(p) == 20000
    for t, q in expected.items():  # draws match the probabilities within 4 standard deviations
        count = sum(s[0] == t for s in p)
        assert abs(count - 20000 * q) < 4 * math.sqrt(20000 * q * (1 - q))
    assert schedule.plan(1) == p  # seeded by (seed, epoch): a resumed run replans the same epoch


@pytest.mark.parametrize("temperature", [0.001, 1e-12])
def test_a_temperature_near_zero_samples_the_largest_task(temperature):
    """size^(1/T) overflows a float for T = 0.001 (55814^1000); the limit T -> 0 is the largest task alone."""
    with pytest.raises(OverflowError):
        SIZES.examples["para"] ** (1 / temperature)
    schedule = build_schedule(ScheduleConfig(name="temperature", temperature=temperature, steps_per_epoch=50),
                              SIZES, 1, seed=7)
    assert schedule.probabilities(1) == pytest.approx({"sst": 0.0, "para": 1.0, "sts": 0.0})
    assert schedule.plan(1) == [["para"]] * 50


def test_annealed_moves_from_sqrt_size_to_uniform():
    schedule = build_schedule(ScheduleConfig(name="annealed"), SIZES, 3, seed=0)
    assert [schedule.alpha(e) for e in (1, 2, 3)] == pytest.approx([0.5, 0.25, 0.0])
    assert schedule.probabilities(3) == pytest.approx({t: 1 / 3 for t in SIZES.tasks})
    assert len(schedule.plan(1)) == sum(BATCHES.values())


def test_adaptive_round_robin_starts_with_the_large_task_alone():
    e1 = plan("adaptive_round_robin", epoch=1, large_task_epochs=2)
    e3 = plan("adaptive_round_robin", epoch=3, large_task_epochs=2)
    assert examples(e1) == {"para": 873 * 64}
    assert examples(e3) == {"sst": 873 * 16, "para": 873 * 64, "sts": 873 * 16}


def test_every_schedule_is_tested_and_counts_steps():
    assert set(SCHEDULES) == {"round_robin", "sequential", "task_by_task", "random_subset", "proportional",
                              "temperature", "annealed", "adaptive_round_robin"}
    schedule = build_schedule(ScheduleConfig(name="adaptive_round_robin"), SIZES, 3, seed=0)
    assert total_steps(schedule, 3) == 873 * 3

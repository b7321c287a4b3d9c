"""The training loop's parts against their definitions: round-robin counts, bucketing, LR schedule, param groups."""

import pytest
import torch

from minbert import BertModel, MultitaskModel
from minbert.schema import load_config
from minbert.data.batching import BatchStream, EncodedSet, bucketed_batches, sorted_batches
from minbert.optim import lr_lambda
from minbert.optim import parameter_groups
from minbert.training.setup import encoder_trainable


def test_batch_stream_recycles_and_reshuffles():
    data = EncodedSet([str(i) for i in range(10)], [[([101, 7] * (i + 1), [0, 0] * (i + 1)) for i in range(10)]],
                      torch.arange(10).float())

    class Pad:  # the stream only needs `pad`; a stand-in that records the rows asked for
        def pad(self, encs):
            return {"n": len(encs)}

    stream = BatchStream(data, Pad(), batch_size=4, generator=torch.Generator().manual_seed(0))
    seen = [stream.next()["index"] for _ in range(6)]  # 3 batches per pass: two passes
    first, second = sum(seen[:3], []), sum(seen[3:], [])
    assert sorted(first) == sorted(second) == list(range(10))  # each pass sees every example once
    assert stream.passes_started == 2


def test_bucketing_covers_every_example_and_cuts_padding():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 60, (2000,), generator=g).tolist()
    batches = bucketed_batches(lengths, 32, g)
    assert sorted(i for b in batches for i in b) == list(range(2000))

    def waste(bs):
        pad = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in bs)
        return pad / sum(max(lengths[i] for i in b) * len(b) for b in bs)

    perm = torch.randperm(2000, generator=g).tolist()
    random_batches = [perm[j:j + 32] for j in range(0, 2000, 32)]
    assert waste(batches) < 0.05 < waste(random_batches)
    assert [i for b in sorted_batches(lengths, 32) for i in b] == sorted(range(2000), key=lambda i: lengths[i])


def test_linear_warmup_then_decay():
    f = lr_lambda(total_steps=100, warmup=0.1, decay="linear")
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)
    assert lr_lambda(100, 0.0, "constant")(70) == 1.0
    cos = lr_lambda(100, 0.0, "cosine")
    assert cos(0) == pytest.approx(1.0) and cos(50) == pytest.approx(0.5) and cos(100) == pytest.approx(0.0)


def test_multistep_milestones_match_torch_multisteplr():
    # 4 epochs of 10 steps, milestones after epochs 1 and 3: as torch's MultiStepLR stepped once per epoch
    f = lr_lambda(40, 0.0, "constant", epoch_starts=[0, 10, 20, 30], milestones=[1, 3], gamma=0.7)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    ref = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[1, 3], gamma=0.7)
    for epoch in range(4):
        for step in range(epoch * 10, epoch * 10 + 10):
            assert f(step) == pytest.approx(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()


def test_staged_freezing():
    cfg = load_config(None, ["train.freeze_stages=[{epochs: 2, train: heads}, {epochs: 3, train: all}, {epochs: 1, train: heads}]"])
    assert [encoder_trainable(cfg, e) for e in range(1, 9)] == [False, False, True, True, True, False, False, False]
    assert not encoder_trainable(load_config(None, ["train.freeze_encoder=true"]), 3)
    assert encoder_trainable(load_config(None, []), 3)


def test_parameter_groups_split_lr_and_decay(tiny_backbone):
    cfg = load_config(None, ["train.lr=2e-5", "train.head_lr=1e-3", "train.head_lrs={sst: 9.5e-4}",
                             "train.weight_decay=0.1"])
    model = MultitaskModel(BertModel.from_pretrained(tiny_backbone), cfg.tasks)
    groups = parameter_groups(model, cfg)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    lrs = {g["name"]: g["lr"] for g in groups}
    assert lrs == {"encoder": 2e-5, "head:sst": 9.5e-4, "head:para": 1e-3, "head:sts": 1e-3}
    for g in groups:
        owner = model.encoder if g["name"] == "encoder" else model.heads[g["name"].split(":")[1]]
        assert {id(p) for p in g["params"]} <= {id(p) for p in owner.parameters()}
        assert g["weight_decay"] in (0.0, 0.1)
        if g["weight_decay"]:
            assert all(p.ndim == 2 for p in g["params"])


def test_train_fraction_keeps_each_tasks_share(small_data_dir, tiny_backbone):
    from minbert import Tokenizer
    from minbert.data.loading import load_split
    from minbert.tasks import COURSE_TASKS

    tok = Tokenizer.from_pretrained(tiny_backbone)
    lines = []
    part = load_split(COURSE_TASKS["sst"], "train", small_data_dir, tok, True, False, lines.append, seed=3, fraction=0.25)
    assert len(part) == 16 and lines[-1].strip() == "using a random 16 of its rows (data.train_fraction 0.25)"
    again = load_split(COURSE_TASKS["sst"], "train", small_data_dir, tok, True, False, lines.append, seed=3, fraction=0.25)
    assert part.ids == again.ids  # seeded


def test_dev_limit_is_one_random_draw_the_same_for_every_seed(data_dir):
    """The course's SST dev file is ordered (its first 500 rows hold 6 of the 139 class-0 sentences): dev_limit
    takes a random 500 instead, in file order, whatever train.seed; the class-0 count is then near the file's
    share (139 / 1101 * 500 = 63; the hypergeometric std is about 6)."""
    from minbert.data.loading import read_split
    from minbert.tasks import COURSE_TASKS

    full = read_split(COURSE_TASKS["sst"], "dev", data_dir, False, lambda line: None)
    first = full[:500]
    assert sum(e.label == 0 for e in full) == 139 and sum(e.label == 0 for e in first) == 6
    subsets = [read_split(COURSE_TASKS["sst"], "dev", data_dir, False, lambda line: None, 500, seed) for seed in (1, 11711)]
    assert [e.id for e in subsets[0]] == [e.id for e in subsets[1]]
    order = {e.id: i for i, e in enumerate(full)}
    assert [order[e.id] for e in subsets[0]] == sorted(order[e.id] for e in subsets[0])
    assert abs(sum(e.label == 0 for e in subsets[0]) - 63) < 4 * 6.2


def test_both_orders_adds_each_pair_swapped_and_leaves_single_sentences(small_data_dir, tiny_backbone, tmp_path):
    """data.both_orders: each Quora / STS training pair of the plain run once more as (b, a) with its label; SST
    unchanged; a run trains with it; not with out-of-fold targets."""
    from minbert.errors import ConfigError
    from minbert.tasks import COURSE_TASKS
    from minbert.training.run import train
    from minbert.training.setup import training_examples

    plain, both = load_config(None, []), load_config(None, ["data.both_orders=true"])
    for name in ("para", "sts"):
        rows = training_examples(plain, COURSE_TASKS[name], small_data_dir, lambda line: None)
        doubled = training_examples(both, COURSE_TASKS[name], small_data_dir, lambda line: None)
        assert doubled[:len(rows)] == rows and len(doubled) == 2 * len(rows)
        assert [(e.id, e.texts, e.label) for e in doubled[len(rows):]] == \
            [(f"{e.id}:swapped", (e.texts[1], e.texts[0]), e.label) for e in rows]
    assert training_examples(both, COURSE_TASKS["sst"], small_data_dir, lambda line: None) == \
        training_examples(plain, COURSE_TASKS["sst"], small_data_dir, lambda line: None)
    cfg = load_config(None, [f"model.backbone={tiny_backbone}", "data.both_orders=true", "train.epochs=1",
                             "train.schedule.until=fixed_steps", "train.schedule.steps_per_epoch=2",
                             "train.batch_size={sst: 4, para: 4, sts: 4}", "eval.test_predictions=false",
                             "train.threads=1"])
    assert set(train(cfg, tmp_path / "run", str(small_data_dir))) == {"sst", "para", "sts", "overall", "epoch"}
    with pytest.raises(ConfigError, match="data.both_orders: not with train.distill.out_of_fold"):
        load_config(None, ["data.both_orders=true", "train.distill.out_of_fold=true",
                           f"train.distill.teachers={{sst: [{tmp_path}]}}"])

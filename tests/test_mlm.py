"""MLM pre-training: masking proportions, tied decoder, held-out loss falls, the output trains as a backbone."""
from __future__ import annotations

import json

import pytest
import torch

from minbert import BertModel, Tokenizer
from minbert.cli import main
from minbert.tools.mlm import MlmHead, mask_tokens


def test_dynamic_masking_proportions(backbone_dir):
    tok = Tokenizer.from_pretrained(backbone_dir)
    batch = tok(["the quick brown fox jumps over the lazy dog " * 12] * 64, ["and again"] * 64)
    ids, att = batch["input_ids"], batch["attention_mask"]
    masked, labels = mask_tokens(ids, att, tok, 0.15, torch.Generator().manual_seed(0))
    special = (ids == tok.cls_id) | (ids == tok.sep_id) | (att == 0)
    chosen = labels != -100
    assert not (chosen & special).any()  # never [CLS], [SEP] or padding
    assert torch.equal(labels[chosen], ids[chosen])
    assert chosen.sum() / (~special).sum() == pytest.approx(0.15, abs=0.01)
    to_mask = (masked[chosen] == tok.mask_id).float().mean()
    kept = (masked[chosen] == ids[chosen]).float().mean()
    assert to_mask == pytest.approx(0.8, abs=0.03) and kept == pytest.approx(0.1, abs=0.03)  # (+ ~10% random)
    assert torch.equal(masked[~chosen], ids[~chosen])


def test_decoder_is_tied_to_word_embeddings(tiny_backbone):
    enc = BertModel.from_pretrained(tiny_backbone)
    head = MlmHead(enc)
    assert head.decoder.weight is enc.embeddings.word_embeddings.weight


def test_pretrain_mlm_lowers_heldout_loss_and_gives_a_backbone(tmp_path, tiny_backbone, small_data_dir, capsys):
    text = tmp_path / "reviews.txt"
    text.write_text("\n".join(f"this movie is great number {i} and i loved it" for i in range(200)))
    out = tmp_path / "mlm"
    code = main(["pretrain-mlm", "--data-dir", str(small_data_dir), "--out", str(out),
                 "--set", f"backbone={tiny_backbone}", "--set", f"text_files=[{text}]", "--set", "epochs=3",
                 "--set", "lr=1e-3", "--set", "batch_size=16", "--set", "accumulate=2", "--set", "heldout=0.1"])
    assert code == 0
    report = json.loads((out / "mlm_report.json").read_text())
    assert report["heldout_loss_after"] < report["heldout_loss_before"] - 0.5  # a random tiny BERT starts at ~ln(30522)
    assert report["perplexity_after"] == pytest.approx(torch.tensor(report["heldout_loss_after"]).exp().item(), rel=1e-4)
    captured = capsys.readouterr()
    assert "held-out MLM loss before" in captured.err  # the log on stderr, the JSON result alone on stdout
    assert json.loads(captured.out)["heldout_loss_after"] == report["heldout_loss_after"]
    # a second run into the same folder is refused and changes nothing; --overwrite replaces the encoder
    before = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file() and f.name != ".lock"}
    args = ["pretrain-mlm", "--data-dir", str(small_data_dir), "--out", str(out), "--set", f"backbone={tiny_backbone}",
            "--set", f"text_files=[{text}]", "--set", "max_steps=2", "--set", "batch_size=16"]
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file() and f.name != ".lock"} == before
    assert main(args + ["--overwrite", "--set", "accumulate=3", "--set", "batch_size=8", "--set", "heldout=0.1"]) == 0
    second = json.loads((out / "mlm_report.json").read_text())
    assert (second["steps"], second["batches"]) == (2, 6)  # max_steps counts updates of `accumulate` batches, as in transformers
    # the held-out loss before training does not depend on the training batch size (16, then 8): fixed masking
    assert second["heldout_loss_before"] == pytest.approx(report["heldout_loss_before"], rel=1e-5)
    capsys.readouterr()
    # the written folder is a backbone that train accepts
    assert main(["train", "--data-dir", str(small_data_dir), "--out", str(tmp_path / "run"),
                 "--set", f"model.backbone={out}", "--set", "train.epochs=1", "--set", "train.schedule.until=fixed_steps",
                 "--set", "train.schedule.steps_per_epoch=1", "--set", "eval.test_predictions=false"]) == 0


def test_bad_mlm_config_is_a_one_line_error(tmp_path, capsys):
    assert main(["pretrain-mlm", "--out", str(tmp_path / "x"), "--set", "sources=[nli]"]) == 2
    assert "sources[0]: 'nli' is not a catalogue task" in capsys.readouterr().err


def test_an_objective_step_of_micro_batches_is_the_step_of_their_mean_loss():
    """MLM's update (training/step.py objective_step) against the closed form: two micro-batches of a squared
    error at 1/2 each make the gradient of the mean over all rows, (2/n) X^T (Xw - y); a non-finite loss skips."""
    from minbert.training.step import objective_step

    torch.manual_seed(0)
    w, x, y = torch.nn.Parameter(torch.randn(3)), torch.randn(4, 3), torch.randn(4)
    loss_of = lambda rows: None if rows is None else ((x[rows] @ w - y[rows]) ** 2).mean()  # noqa: E731
    optimizer = torch.optim.SGD([w], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    w0 = w.detach().clone()
    update, losses = objective_step(loss_of, [[0, 1], None, [2, 3]], optimizer, scheduler, [w], None, accumulate=2)
    assert update.stepped and len(losses) == 2
    assert torch.allclose(w.detach(), w0 - 0.1 * (2 / 4) * x.T @ (x @ w0 - y), atol=1e-6)
    y[0] = float("nan")
    update, _ = objective_step(loss_of, [[0, 1], [2, 3]], optimizer, scheduler, [w], None, accumulate=2)
    assert not update.stepped and w.grad is None

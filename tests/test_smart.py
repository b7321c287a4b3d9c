"""SMART: divergences in closed form, zero perturbation gives zero, the ascent step increases the divergence."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from minbert import BertModel, MultitaskModel, Tokenizer
from minbert.heads.settings import HeadSettings as HeadConfig
from minbert.schema import load_config
from minbert.smart import SmartSettings as SmartConfig
from minbert.kinds import Binary, Classify, Regress
from minbert.smart import Smart
from minbert.training.run import train


def test_symmetric_kl_closed_form():
    p_logits, q_logits = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.5, 0.5, 0.0]])
    p, q = p_logits.softmax(-1), q_logits.softmax(-1)
    expected = ((p - q) * (p.log() - q.log())).sum()  # KL(p||q) + KL(q||p)
    assert Classify().divergence(p_logits, q_logits) == pytest.approx(float(expected), rel=1e-5)
    a, b = torch.tensor([1.5]), torch.tensor([-0.5])  # one-logit heads: Bernoulli(sigmoid(x))
    pa, pb = torch.sigmoid(a), torch.sigmoid(b)
    bern = (pa - pb) * (pa.log() - pb.log()) + ((1 - pa) - (1 - pb)) * ((1 - pa).log() - (1 - pb).log())
    assert Binary().divergence(a, b) == pytest.approx(float(bern), rel=1e-5)
    assert Regress(5.0).divergence(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 3.0])) == pytest.approx(0.5)
    assert Classify().divergence(p_logits, p_logits) == 0


@pytest.fixture
def tiny(tiny_backbone):
    torch.manual_seed(0)
    model = MultitaskModel(BertModel.from_pretrained(tiny_backbone), ["sst", "sts"], HeadConfig(dropout=0.0)).eval()
    tok = Tokenizer.from_pretrained(tiny_backbone)
    return model, [tok(["a good film", "awful"])]


def test_zero_perturbation_gives_zero(tiny):
    model, inputs = tiny
    smart = Smart(SmartConfig(lambda_s=1.0, sigma=0.0, steps=0), model)
    out = model("sst", inputs)
    assert smart.adversarial_loss(model, "sst", inputs, out).item() == pytest.approx(0.0, abs=1e-10)


def test_ascent_step_increases_the_divergence(tiny):
    model, inputs = tiny
    out = model("sst", inputs)
    cfg = dict(lambda_s=1.0, sigma=1e-3, step_size=0.05, epsilon=0.05)
    torch.manual_seed(1)
    at_noise = Smart(SmartConfig(steps=0, **cfg), model).adversarial_loss(model, "sst", inputs, out).item()
    torch.manual_seed(1)
    after_ascent = Smart(SmartConfig(steps=1, **cfg), model).adversarial_loss(model, "sst", inputs, out).item()
    assert after_ascent > 10 * at_noise > 0


def test_regulariser_has_a_gradient_for_the_parameters(tiny):
    model, inputs = tiny
    out = model("sst", inputs)
    torch.manual_seed(1)
    reg = Smart(SmartConfig(lambda_s=1.0, sigma=1e-3, step_size=0.05, epsilon=0.05), model).extra_loss(model, "sst", inputs, out)
    reg.backward()
    assert model.heads["sst"].out.weight.grad.abs().sum() > 0


def test_teacher_is_an_exponential_moving_average(tiny):
    model, _ = tiny
    smart = Smart(SmartConfig(mu=1.0, momentum=0.9), model)
    before = smart.teacher.heads["sst"].out.weight.clone()
    with torch.no_grad():
        model.heads["sst"].out.weight.add_(1.0)
    smart.after_step(model)
    assert torch.allclose(smart.teacher.heads["sst"].out.weight, 0.9 * before + 0.1 * (before + 1.0))


def run_weights(tmp_path, backbone, data, *extra) -> dict:
    cfg = load_config(None, [f"model.backbone={backbone}", "train.epochs=1", "train.schedule.until=fixed_steps",
                             "train.schedule.steps_per_epoch=3", "train.batch_size={sst: 4, para: 4, sts: 4}",
                             "eval.test_predictions=false", "train.checkpoint_every=100", *extra])
    train(cfg, tmp_path, str(data))
    return load_file(str(tmp_path / "last" / "heads.safetensors"))


def test_lambda_zero_is_plain_training_and_lambda_positive_is_not(tmp_path, tiny_backbone, small_data_dir):
    plain = run_weights(tmp_path / "plain", tiny_backbone, small_data_dir)
    zero = run_weights(tmp_path / "zero", tiny_backbone, small_data_dir, "train.smart.lambda_s=0.0", "train.smart.steps=3")
    smart = run_weights(tmp_path / "smart", tiny_backbone, small_data_dir, "train.smart.lambda_s=1.0",
                        "train.smart.mu=1.0")
    assert all(torch.equal(plain[k], zero[k]) for k in plain)
    assert not all(torch.equal(plain[k], smart[k]) for k in plain)

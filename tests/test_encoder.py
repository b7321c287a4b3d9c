"""minbert.BertModel against transformers.BertModel (the independent reference) on the same weights."""
from __future__ import annotations

import pickle

import pytest
import torch
import transformers

from minbert import BertConfig, BertModel, Tokenizer
from minbert.backbone import CheckpointError

SENTENCES = [
    "The gorgeously elaborate continuation of `` The Lord of the Rings '' trilogy is so huge.",
    "Effective but too-tepid biopic",
    "What can you get as a customer of Star Alliance?",
    "A man is playing a guitar.",
]


@pytest.fixture(scope="module")
def pair(backbone_dir):
    ours = BertModel.from_pretrained().eval()
    ref = transformers.BertModel.from_pretrained(str(backbone_dir), attn_implementation="sdpa").eval()
    batch = Tokenizer.from_pretrained()(SENTENCES)
    assert (batch["attention_mask"] == 0).any(), "the batch must contain padding"
    return ours, ref, batch


def test_forward_matches_transformers(pair):
    ours, ref, batch = pair
    with torch.no_grad():
        a = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        b = ref(**batch)
    assert (a.last_hidden_state - b.last_hidden_state).abs().max() <= 1e-5
    assert (a.pooler_output - b.pooler_output).abs().max() <= 1e-5


def test_gradients_match_transformers(pair):
    ours, ref, batch = pair
    ours.zero_grad()
    ref.zero_grad()
    w = torch.linspace(-1, 1, ours.config.hidden_size)

    def loss(out):
        m = batch["attention_mask"].unsqueeze(-1)
        return ((out.last_hidden_state * m) @ w).pow(2).mean() + out.pooler_output.sum()

    loss(ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])).backward()
    loss(ref(**batch)).backward()
    ref_grads = dict(ref.named_parameters())
    checked = 0
    for name, p in ours.named_parameters():
        g, r = p.grad, ref_grads[name].grad
        assert g is not None and r is not None, name
        if name.endswith("attention.self.key.bias"):
            # softmax ignores a per-query constant, so this gradient is exactly 0: both must be rounding noise
            assert g.norm() < 1e-4 and r.norm() < 1e-4, name
            checked += 1
            continue
        rel = (g - r).norm() / r.norm().clamp(min=1e-12)
        assert rel <= 1e-4, f"{name}: relative gradient difference {rel:.2e}"
        checked += 1
    assert checked == len(ref_grads)


def test_save_load_roundtrip_and_transformers_reads_it(tmp_path, pair):
    ours, _, batch = pair
    ours.save_pretrained(tmp_path)
    again = BertModel.from_pretrained(tmp_path)
    for (n1, p1), (n2, p2) in zip(ours.state_dict().items(), again.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    hf = transformers.BertModel.from_pretrained(str(tmp_path)).eval()
    with torch.no_grad():
        a = ours(batch["input_ids"], batch["attention_mask"]).pooler_output
        b = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).pooler_output
    assert (a - b).abs().max() <= 1e-5


def test_sizes_come_from_config(tiny_backbone):
    model = BertModel.from_pretrained(tiny_backbone)
    assert model.config.hidden_size == 32 and len(model.encoder.layer) == 2
    out = model(torch.tensor([[101, 2000, 102]]), torch.ones(1, 3, dtype=torch.long))
    assert out.last_hidden_state.shape == (1, 3, 32) and out.pooler_output.shape == (1, 32)


def test_legacy_bin_loads_with_weights_only(tmp_path, tiny_backbone):
    model = BertModel.from_pretrained(tiny_backbone)
    model.config.to_json_file(tmp_path / "config.json")
    torch.save({"bert." + k: v for k, v in model.state_dict().items()}, tmp_path / "pytorch_model.bin")
    again = BertModel.from_pretrained(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


class _Evil:
    def __reduce__(self):
        return (print, ("this pickle ran code",))


def test_pickle_with_code_is_refused(tmp_path, tiny_backbone, capsys):
    BertModel.from_pretrained(tiny_backbone).config.to_json_file(tmp_path / "config.json")
    with open(tmp_path / "pytorch_model.bin", "wb") as f:
        pickle.dump({"x": _Evil()}, f)
    with pytest.raises(CheckpointError, match="weights_only"):
        BertModel.from_pretrained(tmp_path)
    assert "this pickle ran code" not in capsys.readouterr().out


def test_truncated_and_misshaped_checkpoints_are_clear_errors(tmp_path, tiny_backbone):
    model = BertModel.from_pretrained(tiny_backbone)
    model.save_pretrained(tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        BertModel.from_pretrained(tmp_path)
    bigger = BertConfig(**{**model.config.__dict__, "intermediate_size": 128})
    model.save_pretrained(tmp_path)
    bigger.to_json_file(tmp_path / "config.json")
    with pytest.raises(CheckpointError, match="shape"):
        BertModel.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        BertModel.from_pretrained(tmp_path / "missing")


def test_parameter_shapes_match_the_built_model():
    """The shapes used to vet a checkpoint's header before loading it are those of the model itself."""
    config = BertConfig(hidden_size=24, num_hidden_layers=3, num_attention_heads=4, intermediate_size=40,
                        vocab_size=50, max_position_embeddings=20, type_vocab_size=3)
    built = {k: tuple(v.shape) for k, v in BertModel(config).state_dict().items()}
    assert BertModel.parameter_shapes(config) == built

"""A BERT encoder written from scratch (Devlin et al. 2019), readable in one sitting.

Embeddings -> N post-LN transformer layers (SDPA self-attention + GELU feed-forward) -> pooler.
Parameter names follow Hugging Face's `BertModel`, so `model.safetensors` files interoperate.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from . import writes
from torch import nn

from .errors import CheckpointError
from .backbone import read_state_dict, resolve_backbone


@dataclass
class BertConfig:
    """The sizes of a BERT, read from a checkpoint's `config.json` (HF field names)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @classmethod
    def from_json_file(cls, path: str | Path) -> "BertConfig":
        path = Path(path)
        try:
            raw = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise CheckpointError(f"{path}: cannot read the model config ({' '.join(str(e).split())[:200]})") from None
        if not isinstance(raw, dict):
            raise CheckpointError(f"{path}: expected a JSON object, got {type(raw).__name__}")
        for f in fields(cls):
            if f.name not in raw:
                continue
            value, default = raw[f.name], f.default
            if isinstance(default, int) and not (isinstance(value, int) and not isinstance(value, bool)
                                                 and (value > 0 or (f.name == "pad_token_id" and value >= 0))
                                                 and value < 2**31):
                raise CheckpointError(f"{path}: {f.name} must be a positive integer, got {value!r}"[:300])
            if isinstance(default, float) and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                                   and 0 <= value < 1):
                raise CheckpointError(f"{path}: {f.name} must be a number in [0, 1), got {value!r}"[:300])
        if raw.get("model_type", "bert") != "bert":
            raise CheckpointError(f"{path}: model_type is {raw['model_type']!r}, minbert reads BERT checkpoints only")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise CheckpointError(f"{path}: only absolute position embeddings are supported")
        if not isinstance(raw.get("hidden_act", "gelu"), str) or raw.get("hidden_act", "gelu") not in ACTIVATIONS:
            raise CheckpointError(f"{path}: hidden_act {raw['hidden_act']!r} is not one of {sorted(ACTIVATIONS)}")
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in raw.items() if k in known})
        if config.hidden_size % config.num_attention_heads:
            raise CheckpointError(f"{path}: hidden_size {config.hidden_size} is not a multiple of "
                                  f"num_attention_heads {config.num_attention_heads}")
        return config

    def to_json_file(self, path: str | Path) -> None:
        data = {"architectures": ["BertModel"], "model_type": "bert", "position_embedding_type": "absolute"}
        data.update(asdict(self))
        writes.write_text(path, json.dumps(data, indent=2) + "\n")


ACTIVATIONS = {"gelu": F.gelu, "gelu_new": lambda x: F.gelu(x, approximate="tanh"), "relu": F.relu}


class EncoderOutput(NamedTuple):
    """What `BertModel` returns (Hugging Face's field names)."""

    last_hidden_state: torch.Tensor  # (batch, seq, hidden)
    pooler_output: torch.Tensor  # (batch, hidden): tanh(W h_[CLS] + b)


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise CheckpointError(f"hidden_size {config.hidden_size} is not a multiple of {config.num_attention_heads} heads")
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None) -> torch.Tensor:
        b, t, h = x.shape

        def heads(proj: nn.Linear) -> torch.Tensor:  # (b, t, h) -> (b, heads, t, head_dim)
            return proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

        y = F.scaled_dot_product_attention(
            heads(self.query), heads(self.key), heads(self.value),
            attn_mask=attn_bias, dropout_p=self.dropout_p if self.training else 0.0,
        )
        return y.transpose(1, 2).reshape(b, t, h)


class ResidualLayerNorm(nn.Module):
    """Projection back to the hidden size, dropout, residual, LayerNorm: the sublayer that closes attention
    (Hugging Face's BertSelfOutput) and the feed-forward block (its BertOutput); the key names are theirs."""

    def __init__(self, in_size: int, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(in_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, y: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dropout(self.dense(y)))


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = ResidualLayerNorm(config.hidden_size, config)  # HF: BertSelfOutput

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(x, attn_bias), x)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACTIVATIONS[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = ResidualLayerNorm(config.intermediate_size, config)  # HF: BertOutput

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None) -> torch.Tensor:
        x = self.attention(x, attn_bias)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None, layers: int | None = None) -> torch.Tensor:
        for layer in self.layer if layers is None else self.layer[:layers]:  # a slice builds a new ModuleList
            x = layer(x, attn_bias)
        return x


class BertPooler(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class BertModel(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)
        self.apply(self._init_weights)

    @staticmethod
    def parameter_shapes(config: BertConfig) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every weight a config implies, without building the model (checked against
        `BertModel(config).state_dict()` in tests/test_encoder.py): used to vet a checkpoint's header."""
        h, i = config.hidden_size, config.intermediate_size
        shapes = {"embeddings.word_embeddings.weight": (config.vocab_size, h),
                  "embeddings.position_embeddings.weight": (config.max_position_embeddings, h),
                  "embeddings.token_type_embeddings.weight": (config.type_vocab_size, h),
                  "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,)}
        for n in range(config.num_hidden_layers):
            at = f"encoder.layer.{n}.attention."
            for proj in ("self.query", "self.key", "self.value", "output.dense"):
                shapes[at + proj + ".weight"], shapes[at + proj + ".bias"] = (h, h), (h,)
            for norm in (at + "output.LayerNorm", f"encoder.layer.{n}.output.LayerNorm"):
                shapes[norm + ".weight"], shapes[norm + ".bias"] = (h,), (h,)
            shapes[f"encoder.layer.{n}.intermediate.dense.weight"] = (i, h)
            shapes[f"encoder.layer.{n}.intermediate.dense.bias"] = (i,)
            shapes[f"encoder.layer.{n}.output.dense.weight"] = (h, i)
            shapes[f"encoder.layer.{n}.output.dense.bias"] = (h,)
        shapes["pooler.dense.weight"], shapes["pooler.dense.bias"] = (h, h), (h,)
        return shapes

    def _init_weights(self, module: nn.Module) -> None:
        """BERT's initialisation (truncated-normal-like N(0, 0.02)); overwritten when weights are loaded."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, layers: int | None = None) -> EncoderOutput:
        """The hidden states after all layers, or after the first `layers` (then no pooler output)."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        hidden = self.encoder(x, self.attention_bias(attention_mask, x.dtype), layers)
        return EncoderOutput(hidden, self.pooler(hidden) if layers is None else None)

    @staticmethod
    def attention_bias(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        """(batch, seq) 1/0 mask -> additive (batch, 1, 1, seq) bias: 0 for tokens, a large negative for padding."""
        if attention_mask is None or bool(attention_mask.all()):
            return None
        return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    # ---- checkpoints (HF format: config.json + model.safetensors) ----
    @classmethod
    def from_pretrained(cls, path: str | Path | None = None) -> "BertModel":
        """Load an HF-format BERT folder or Hub id (see backbone.locate_backbone); `None` means the default
        backbone (all-MiniLM-L6-v2)."""
        folder = resolve_backbone(path)
        config = BertConfig.from_json_file(folder / "config.json") if (folder / "config.json").is_file() else None
        if config is None:
            raise CheckpointError(f"{folder}: no config.json (is this a BERT checkpoint folder?)")
        model = cls(config)
        state = read_state_dict(folder)
        model.load_hf_state_dict(state, source=str(folder))
        return model

    def load_hf_state_dict(self, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        """Load HF BertModel weights, accepting a `bert.` prefix (as in BertFor* checkpoints)."""
        ours = self.state_dict()
        picked: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            name = key[len("bert."):] if key.startswith("bert.") else key
            if name in ours:
                picked[name] = value
        missing = sorted(set(ours) - set(picked))
        if missing:
            raise CheckpointError(f"{source}: weights missing for {len(missing)} parameter(s), e.g. {missing[:3]}")
        for name, value in picked.items():
            if value.shape != ours[name].shape:
                raise CheckpointError(
                    f"{source}: weight {name} has shape {tuple(value.shape)}, config.json implies {tuple(ours[name].shape)}")
        self.load_state_dict({k: v.to(ours[k].dtype) for k, v in picked.items()})

    def save_pretrained(self, folder: str | Path) -> None:
        """Write config.json and model.safetensors (HF key names) into `folder`."""
        folder = Path(folder)
        writes.mkdir(folder)
        self.config.to_json_file(folder / "config.json")
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        writes.save_safetensors(tensors, folder / "model.safetensors", metadata={"format": "pt"})

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

"""The multi-task model: one shared BERT encoder and a head per task, chosen from the config.

With one task enabled it is a single-task model (e.g. the SST-5 or CFIMDB sentiment classifier);
`freeze_encoder` turns it into the "frozen encoder" baseline where only the heads learn.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .checkpoints import CheckpointError, read_state_dict
from .encoder import BertModel
from .heads import TaskHead
from .tasks import Task, get_task


class MultitaskModel(nn.Module):
    def __init__(self, encoder: BertModel, task_names: list[str], pooling: str = "mean",
                 pair_encoding: str = "cross", dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.tasks: dict[str, Task] = {n: get_task(n) for n in task_names}
        self.heads = nn.ModuleDict({
            n: TaskHead(encoder.config.hidden_size, t.num_outputs, pooling,
                        pair_encoding if t.is_pair else None, dropout)
            for n, t in self.tasks.items()
        })

    def forward(self, task: str, inputs: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """The task's output in its own units (class logits, paraphrase logit, or 0-5 score)."""
        return self.tasks[task].output(self.heads[task](self.encoder, inputs))

    def joint_input(self, task: str) -> bool:
        return self.heads[task].joint_input

    def freeze_encoder(self, frozen: bool = True) -> None:
        for p in self.encoder.parameters():
            p.requires_grad_(not frozen)

    # ---- checkpoint: the encoder in HF format, the heads beside it ----
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.encoder.save_pretrained(folder)
        heads = {k: v.detach().contiguous().cpu() for k, v in self.heads.state_dict().items()}
        save_file(heads, str(folder / "heads.safetensors"))

    def load(self, folder: str | Path) -> None:
        """Load encoder and heads saved by `save` (the architecture must match the config)."""
        self.encoder.load_hf_state_dict(read_state_dict(Path(folder)), source=str(folder))
        self.load_heads(folder)

    def load_heads(self, folder: str | Path) -> None:
        path = Path(folder) / "heads.safetensors"
        if not path.is_file():
            raise CheckpointError(f"{path}: heads file not found")
        state = load_file(str(path))
        try:
            self.heads.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: heads do not match the config ({str(e).splitlines()[0]})") from e

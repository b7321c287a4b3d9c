"""The multi-task model: one shared BERT encoder and a head per task, chosen from the config.

With one task enabled it is a single-task model (e.g. the SST-5 or CFIMDB sentiment classifier);
`freeze_encoder` turns it into the "frozen encoder" baseline where only the heads learn. Tasks named
together in `shared` use one linear head (e.g. paraphrase and STS: one pair head, each task reading its
raw output in its own units through its kind).
"""
from __future__ import annotations

from pathlib import Path

import torch
from . import writes
from torch import nn

from .errors import CheckpointError
from .backbone import read_safetensors, read_state_dict, resolve_backbone
from .heads.settings import HeadSettings
from .schema import Config
from .encoder import BertConfig, BertModel
from .heads import HeadOutput, TaskHead, build_head
from .losses import LOSSES
from .tasks import Task, get_task
from .tokenizer import Tokenizer


def head_owners(task_names: list[str], shared: list[str] | None) -> dict[str, str]:
    """Task -> the task whose head it uses (the first of `shared` for the tasks named there)."""
    shared = [t for t in shared or [] if t in task_names]
    return {t: (shared[0] if t in shared else t) for t in task_names}


def task_objects(tasks: dict[str, Task] | list[str]) -> dict[str, Task]:
    """Tasks by name: given as they are, or catalogue tasks named."""
    return dict(tasks) if isinstance(tasks, dict) else {n: get_task(n) for n in tasks}


def build_heads(encoder_config: BertConfig, tasks: dict[str, Task] | list[str], settings: dict[str, HeadSettings],
                shared: list[str] | None) -> nn.ModuleDict:
    """One head per owning task (see `head_owners`), sized for an encoder of `encoder_config`."""
    tasks = task_objects(tasks)
    owners = head_owners(list(tasks), shared)
    return nn.ModuleDict({n: build_head(encoder_config, t, settings[n]) for n, t in tasks.items() if owners[n] == n})


class MultitaskModel(nn.Module):
    def __init__(self, encoder: BertModel, tasks: dict[str, Task] | list[str],
                 heads: HeadSettings | dict[str, HeadSettings] | None = None, shared: list[str] | None = None):
        super().__init__()
        self.encoder = encoder
        self.tasks: dict[str, Task] = task_objects(tasks)
        task_names = list(self.tasks)
        settings = heads if isinstance(heads, dict) else {n: heads or HeadSettings() for n in task_names}
        self.head_owner = head_owners(task_names, shared)  # task -> task whose head it uses
        self.loss_names = {n: settings[n].loss or t.kind.default_loss for n, t in self.tasks.items()}
        self.heads = build_heads(encoder.config, self.tasks, settings, shared)
        for head in self.heads.values():  # private layers start as copies of the encoder's top layers
            for own, top in zip(head.private, encoder.encoder.layer[len(encoder.encoder.layer) - len(head.private):]):
                own.load_state_dict(top.state_dict())

    def head(self, task: str) -> TaskHead:
        return self.heads[self.head_owner[task]]

    def forward(self, task: str, inputs: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """The task's output in its own units (class logits, paraphrase logit, or 0-5 score)."""
        return self.outputs(task, inputs).value

    def outputs(self, task: str, inputs: list[dict[str, torch.Tensor]]) -> HeadOutput:
        """The task's head output: its value in task units, and what the losses need besides (the cosine)."""
        head = self.head(task)
        out = head(self.encoder, inputs)
        if head.task.name == task:
            return out
        return HeadOutput(self.tasks[task].kind.output(out.raw), out.raw)  # a shared head, read in this task's units

    def loss(self, task: str, out: HeadOutput, labels: torch.Tensor) -> torch.Tensor:
        return LOSSES[self.loss_names[task]].fn(out, labels, self.tasks[task])

    def joint_input(self, task: str) -> bool:
        return self.head(task).joint_input

    def encoder_parts(self) -> list[nn.Module]:
        """The encoder and the heads' private copies of its layers: what `train_only("heads")` freezes."""
        return [self.encoder, *(head.private for head in self.heads.values() if len(head.private))]

    def train_only(self, part: str) -> None:
        """What learns: `all`, `private` (the heads and their private layers; the shared encoder frozen) or
        `heads` (the encoder and the private layers frozen). A frozen part also keeps its dropout off."""
        frozen = {"all": [], "private": [self.encoder], "heads": self.encoder_parts()}[part]
        for module in self.encoder_parts():
            module.requires_grad_(not any(module is f for f in frozen))
        for module in frozen:
            module.eval()

    # ---- checkpoint: the encoder in HF format, the heads beside it ----
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.encoder.save_pretrained(folder)
        heads = {k: v.detach().contiguous().cpu() for k, v in self.heads.state_dict().items()}
        writes.save_safetensors(heads, folder / "heads.safetensors")

    def load(self, folder: str | Path) -> None:
        """Load encoder and heads saved by `save` (the architecture must match the config)."""
        self.encoder.load_hf_state_dict(read_state_dict(Path(folder)), source=str(folder))
        self.load_heads(folder)

    def load_heads(self, folder: str | Path) -> None:
        path = Path(folder) / "heads.safetensors"
        if not path.is_file():
            raise CheckpointError(f"{path}: heads file not found")
        state = read_safetensors(path)
        try:
            self.heads.load_state_dict(state)
        except RuntimeError as e:
            why = " ".join(str(e).split())[:300]
            raise CheckpointError(f"{path}: heads do not match the config ({why})") from None


def build_model(cfg: Config, backbone: str | Path | None = None) -> tuple[MultitaskModel, Tokenizer]:
    """The model and tokenizer of `cfg`, the encoder from `backbone` (a folder) or else `cfg.model.backbone`."""
    folder = resolve_backbone(backbone if backbone is not None else cfg.model.backbone)  # once: a Hub id is a lookup
    tokenizer = Tokenizer.from_pretrained(folder, max_length=cfg.model.max_length)
    encoder = BertModel.from_pretrained(folder)
    model = MultitaskModel(encoder, {t: cfg.task(t) for t in cfg.tasks}, {t: cfg.model.head_config(t) for t in cfg.tasks},
                           cfg.model.shared_heads)
    return model, tokenizer

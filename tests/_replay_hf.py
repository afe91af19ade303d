"""A tiny Hugging Face ``Trainer`` run for the replay tests: a random two-layer regressor built
from a config (never downloaded), CPU, ``report_to=[]``; a callback records what the Trainer
logged and evaluated, in order, to compare with the ``trainer_state.json`` it writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn
from transformers import (
    PretrainedConfig,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()


class ReplayTinyConfig(PretrainedConfig):
    model_type = "trainctl-replay-tiny"

    def __init__(self, n_in: int = 3, **kwargs: Any) -> None:
        self.n_in = n_in
        super().__init__(**kwargs)


class ReplayTinyModel(PreTrainedModel):
    config_class = ReplayTinyConfig

    def __init__(self, config: ReplayTinyConfig) -> None:
        super().__init__(config)
        self.net = nn.Sequential(nn.Linear(config.n_in, 8), nn.Tanh(), nn.Linear(8, 1))
        self.post_init()

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]:
        out = self.net(x).squeeze(-1)
        loss = None if labels is None else nn.functional.mse_loss(out, labels)
        return {"loss": loss, "logits": out}


class _Data(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, generator=g)
        self.y = self.x.sum(-1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


class _Record(TrainerCallback):
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        self.seen.append(("log", dict(logs or {})))

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None,
                    **kw: Any) -> None:
        self.seen.append(("evaluate", dict(metrics or {})))


def train_tiny(out: Path) -> tuple[Path, list[tuple[str, dict[str, Any]]]]:
    """Train 3 epochs (4 steps each), evaluating and logging every epoch; return the path of
    ``trainer_state.json`` and what the Trainer logged and evaluated, in order."""
    torch.manual_seed(0)
    args = TrainingArguments(
        output_dir=str(out), num_train_epochs=3, per_device_train_batch_size=8,
        eval_strategy="epoch", logging_strategy="epoch", save_strategy="no", report_to=[],
        use_cpu=True, learning_rate=0.05, disable_tqdm=True,
    )
    record = _Record()
    trainer = Trainer(model=ReplayTinyModel(ReplayTinyConfig()), args=args,
                      train_dataset=_Data(32, 0), eval_dataset=_Data(8, 1), callbacks=[record])
    trainer.train()
    trainer.save_state()
    return out / "trainer_state.json", record.seen

"""A tiny Hugging Face setup for the adapter tests: a model built from a config with random
weights (never downloaded), a synthetic dataset, and callbacks that script the evaluation metrics
and record what the Trainer did."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn
from transformers import (
    PretrainedConfig,
    PreTrainedModel,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

transformers.utils.logging.disable_progress_bar()  # "Writing model shards" bars in every save
transformers.utils.logging.set_verbosity_error()


class TinyConfig(PretrainedConfig):
    model_type = "trainctl-tiny"

    def __init__(self, n_in: int = 4, hidden: int = 8, **kwargs: Any) -> None:
        self.n_in = n_in
        self.hidden = hidden
        super().__init__(**kwargs)


class TinyRegressor(PreTrainedModel):
    """A two-layer regressor as a ``PreTrainedModel`` (random weights from the config)."""

    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        self.net = nn.Sequential(
            nn.Linear(config.n_in, config.hidden), nn.Tanh(), nn.Linear(config.hidden, 1)
        )
        self.post_init()

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]:
        out = self.net(x).squeeze(-1)
        loss = None if labels is None else nn.functional.mse_loss(out, labels)
        return {"loss": loss, "logits": out}


class Data(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x.sum(-1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


TRAIN = Data(16, 0)
EVAL = Data(4, 1)


class Scripted(TrainerCallback):
    """Replaces an evaluation metric, in place, before any later callback (and the Trainer's
    ``_determine_best_metric``) reads it: ``by_step(state.global_step)``, which stays the same
    across a resume."""

    def __init__(self, by_step: Callable[[int], float], key: str = "eval_loss") -> None:
        self.by_step = by_step
        self.key = key

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None,
                    **kwargs: Any) -> None:
        metrics[self.key] = self.by_step(state.global_step)


class Recorder(TrainerCallback):
    """Records the rate each optimizer step used (read just before ``optimizer.step()``)."""

    def __init__(self) -> None:
        self.rates: list[tuple[int, tuple[float, ...]]] = []

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, optimizer: Any = None,
                              **kwargs: Any) -> None:
        lrs = tuple(float(g["lr"]) for g in optimizer.param_groups)
        self.rates.append((state.global_step + 1, lrs))


class Boom(Exception):
    """Raised by :class:`Crash` to interrupt a run."""


class Crash(TrainerCallback):
    """Raises :class:`Boom` when step ``at + 1`` begins: the run dies after step ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= self.at:
            raise Boom(f"interrupted after step {state.global_step}")


def args_for(output_dir: Path | str, **overrides: Any) -> TrainingArguments:
    kw: dict[str, Any] = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4,
        "eval_strategy": "steps",
        "eval_steps": 1,
        "save_strategy": "no",
        "logging_strategy": "no",
        "report_to": [],
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
        "data_seed": 0,
    }
    kw.update(overrides)
    return TrainingArguments(**kw)


def trainer_for(
    args: TrainingArguments,
    callbacks: Sequence[TrainerCallback],
    *,
    optimizers: Callable[[nn.Module], tuple[Any, Any]] | None = None,
    seed: int = 0,
) -> Trainer:
    """A Trainer on a fresh model seeded with ``seed``; ``optimizers(model)`` gives the
    ``(optimizer, scheduler)`` pair, or the Trainer builds its defaults."""
    torch.manual_seed(seed)
    model = TinyRegressor(TinyConfig())
    pair = (None, None) if optimizers is None else optimizers(model)
    trainer = Trainer(model=model, args=args, train_dataset=TRAIN, eval_dataset=EVAL,
                      callbacks=list(callbacks), optimizers=pair)
    trainer.remove_callback(PrinterCallback)  # disable_tqdm=True prints every log otherwise
    return trainer

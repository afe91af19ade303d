"""Fine-tune a tiny BERT in ``transformers.Trainer`` under one trainctl Controller.

The task is synthetic and learnable: sequences of random tokens, labelled 1 when token 5 occurs
in them (15% of the labels flipped, so the evaluation loss levels off). The model is a
``BertForSequenceClassification`` built from a small ``BertConfig`` with random weights (nothing
is downloaded). One Controller drives the Trainer:

- warmup + cosine learning-rate schedule, advanced after every optimizer step;
- plateau reduction on top of the schedule (which the Trainer's schedulers cannot combine);
- early stopping on the evaluation loss that restores the best weights at the end;
- checkpoints as the Trainer's own ``checkpoint-<step>`` folders, of which trainctl keeps the best
  2 by evaluation loss and the newest one (best-k + last), with the controller's state inside.

Run it twice: the first run is interrupted (``--interrupt-after`` steps, as a crash would), the
second resumes from the newest checkpoint and continues exactly (patience, cooldown, the
schedule's step, the kept checkpoints, the best weights)::

    python examples/transformers_trainer.py /tmp/hf-run --interrupt-after 60
    python examples/transformers_trainer.py /tmp/hf-run

``TRAINCTL_EXAMPLE_FAST=1`` uses fewer samples and steps (the test suite runs it that way).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

import trainctl
from trainctl import schedules
from trainctl.adapters.transformers import ControllerCallback

FAST = os.environ.get("TRAINCTL_EXAMPLE_FAST") == "1"
N_TRAIN, N_EVAL = (128, 64) if FAST else (256, 128)
BATCH = 16
EPOCHS = 4 if FAST else 10
NOISE = 0.15  # flipped labels: the evaluation loss bottoms out, then rises
LENGTH, VOCAB, MARKER = 12, 24, 5
BASE_LR = 5e-3


class TokenTask(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Random token sequences; the label says whether ``MARKER`` occurs (about half do), with
    ``NOISE`` of the labels flipped."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(6, VOCAB, (n, LENGTH), generator=g)
        has = torch.rand(n, generator=g) < 0.5
        for _ in range(3):  # up to three occurrences: a rule one attention layer learns fast
            where = torch.randint(1, LENGTH, (n,), generator=g)
            ids[has, where[has]] = MARKER
        ids[:, 0] = 2  # a [CLS]-like first token
        flip = torch.rand(n, generator=g) < NOISE
        self.ids, self.labels = ids, (has ^ flip).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def accuracy(prediction: Any) -> dict[str, float]:
    logits, labels = prediction
    return {"accuracy": float((logits.argmax(-1) == labels).mean())}


class Interrupt(TrainerCallback):
    """Stands in for a crash: raises once ``after`` optimizer steps are done."""

    def __init__(self, after: int) -> None:
        self.after = after

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= self.after:
            raise KeyboardInterrupt(f"interrupted after step {state.global_step}")


def make_controller(total_steps: int) -> trainctl.Controller:
    return trainctl.Controller(
        trainctl.ReduceLROnPlateau("eval_loss", factor=0.5, patience=2),
        trainctl.EarlyStopping("eval_loss", patience=5, restore_best_weights=True),
        trainctl.CheckpointPolicy("eval_loss", save_top_k=2, save_last=True,
                                  filename="checkpoint-{step}"),
        schedule=schedules.warmup_cosine(
            BASE_LR, total_steps, warmup_steps=8, final_lr=BASE_LR / 20
        ),
    )


def main(directory: str, interrupt_after: int | None = None) -> ControllerCallback:
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    train, evaluation = TokenTask(N_TRAIN, 0), TokenTask(N_EVAL, 1)
    steps_per_epoch = N_TRAIN // BATCH
    total = EPOCHS * steps_per_epoch

    torch.manual_seed(0)
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=LENGTH, num_labels=2)
    model = BertForSequenceClassification(config)  # random weights from the config

    callback = ControllerCallback(make_controller(total), verbose=True)
    resumed = callback.resume(directory)  # the newest checkpoint holding the controller's state
    if resumed.stopped:
        print(f"the run in {directory} had already stopped at {resumed.checkpoint}: nothing to do")
        return callback
    print("fresh start" if resumed.fresh else f"resuming from {resumed.checkpoint}")

    args = TrainingArguments(
        output_dir=directory, num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=64, eval_strategy="steps", eval_steps=steps_per_epoch // 2,
        save_strategy="no",  # trainctl's CheckpointPolicy decides the saves
        logging_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=BASE_LR)
    callbacks: list[TrainerCallback] = [callback]
    if interrupt_after is not None:
        callbacks.append(Interrupt(interrupt_after))
    trainer = Trainer(
        model=model, args=args, train_dataset=train, eval_dataset=evaluation,
        compute_metrics=accuracy, callbacks=callbacks,
        # a scheduler that leaves the rate to trainctl (the Trainer's default would fight it)
        optimizers=ControllerCallback.optimizers(optimizer),
    )
    trainer.remove_callback(PrinterCallback)
    try:
        trainer.train(resume_from_checkpoint=None if resumed.path is None else str(resumed.path))
    except KeyboardInterrupt as exc:
        print(f"{exc}; run the script again to resume")
        return callback
    final = trainer.evaluate()  # the restored best weights
    print(f"stopped after {trainer.state.global_step} steps; best weights restored: "
          f"eval_loss {final['eval_loss']:.4f}, accuracy {final['eval_accuracy']:.3f}")
    kept = sorted(p.name for p in Path(directory).glob("checkpoint-*"))
    print("kept:", kept, "names:", callback.folders)
    return callback


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", default="hf-trainer-run")
    parser.add_argument("--interrupt-after", type=int, default=None,
                        help="stop the run after this many optimizer steps, as a crash would")
    ns = parser.parse_args()
    main(ns.directory, ns.interrupt_after)
    sys.exit(0)

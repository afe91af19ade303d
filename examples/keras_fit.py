"""Warmup + cosine + plateau + early stopping + crash-safe checkpoints in one Keras ``fit``.

Keras refuses a plateau reduction on top of a LearningRateSchedule; here trainctl owns the
schedule and sets a float rate every step. Run it twice: the second run resumes from the
checkpoint (weights, optimizer state and the controller's patience/cooldown/best).

    KERAS_BACKEND=torch python examples/keras_fit.py /tmp/keras-fit-ckpt
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np

import trainctl
from trainctl import schedules
from trainctl.adapters.keras import ControllerCallback


def main(directory: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 1)) + 0.1 * rng.normal(size=(256, 1))).astype("float32")
    epochs, batch_size = 30, 32
    steps = epochs * (len(x) // batch_size)

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")

    ctl = trainctl.Controller(
        trainctl.ReduceLROnPlateau("val_loss", patience=2, factor=0.5),
        trainctl.EarlyStopping("val_loss", patience=5, restore_best_weights=True),
        trainctl.CheckpointPolicy("val_loss", save_top_k=2, save_last=True,
                                  filename="epoch{epoch:03d}-{val_loss:.4f}",
                                  extension=".weights.h5"),
        schedule=schedules.warmup_cosine(1e-2, total_steps=steps, warmup_steps=16),
    )
    callback = ControllerCallback(ctl, store=directory, verbose=1)
    resumed = callback.resume(model)  # nothing to resume the first time
    if resumed.stopped:
        print(f"the run in {directory} had already stopped: nothing to train")
    else:
        print(f"starting at epoch {resumed.epoch + 1}")
    # fit starts at resumed.epoch by itself (and trains nothing if the run had stopped)
    model.fit(x, y, validation_split=0.25, epochs=epochs, batch_size=batch_size,
              shuffle=False, verbose=0, callbacks=[callback])
    print(ctl.finish().explain())
    print("kept:", [e.name for e in callback.store.entries] if callback.store else [])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "keras-fit-checkpoints")

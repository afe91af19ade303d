"""Framework adapters: each translates one framework's hooks into Controller calls.

Import the one you need; importing this package imports no framework:

- :mod:`trainctl.adapters.torch`: plain PyTorch loops (``TorchController``), a drop-in
  ``ReduceLROnPlateau``, an ``LRScheduler`` that runs any trainctl schedule, torch.distributed;
- :mod:`trainctl.adapters.keras`: drop-in Keras callbacks and a ``ControllerCallback`` for
  ``model.fit``;
- :mod:`trainctl.adapters.lightning`: a ``ControllerCallback`` and a drop-in ``EarlyStopping``
  for ``lightning.pytorch.Trainer``;
- :mod:`trainctl.adapters.transformers`: a ``ControllerCallback`` and a drop-in
  ``EarlyStoppingCallback`` for Hugging Face's ``Trainer``.

Adapters hold no decision logic: they read metrics and learning rates out of the framework, call
the core, and carry the decision out through :class:`trainctl.effects.EffectsRunner` (set rates,
stop, snapshot or restore weights, save).
"""

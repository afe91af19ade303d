"""Learning-rate schedules as pure functions of the step.

Every factory returns an immutable, picklable :class:`Schedule` ``s``: ``s(step)`` is a float for
an ``int`` step and a float64 array for an integer numpy array (vectorised), ``s.base_lr`` is the
reference rate for param groups (``group_lr(t) = group_base_lr * s(t) / s.base_lr``, torch
``LambdaLR``'s rule), and ``repr(s)`` is the call that rebuilds it. Each factory's docstring gives
its formula and the framework class it mirrors (torch, Keras, Hugging Face).

>>> from trainctl.schedules import warmup_cosine
>>> s = warmup_cosine(0.1, total_steps=1000, warmup_steps=100)
>>> s(0), s(50), s(100), s(1000)
(0.0, 0.05, 0.1, 0.0)

``total_steps`` always means the whole run, warmup included, in the one-call forms
(``warmup_cosine``, ``warmup_linear``, ``warmup_stable_decay``). :func:`warmup` instead shifts the
schedule it wraps: ``warmup(cosine(lr, T - W), W)`` is ``warmup_cosine(lr, T, W)``.

Importing this package imports only the standard library, attrs and numpy; :func:`plot` imports
matplotlib when called.
"""

from ._base import Schedule
from ._combinators import chain, join, warmup
from ._cycles import cosine_restarts, cyclic, one_cycle
from ._decay import (
    constant,
    constant_factor,
    cosine,
    exponential,
    exponential_decay,
    inverse_sqrt,
    inverse_time_decay,
    linear,
    multistep,
    piecewise_constant,
    polynomial,
    step_decay,
    warmup_stable_decay,
)
from ._plot import plot
from ._warmup_decay import warmup_cosine, warmup_linear
from ._wrappers import keras_recurrence, lambda_lr

__all__ = [
    "Schedule",
    "chain",
    "constant",
    "constant_factor",
    "cosine",
    "cosine_restarts",
    "cyclic",
    "exponential",
    "exponential_decay",
    "inverse_sqrt",
    "inverse_time_decay",
    "join",
    "keras_recurrence",
    "lambda_lr",
    "linear",
    "multistep",
    "one_cycle",
    "piecewise_constant",
    "plot",
    "polynomial",
    "step_decay",
    "warmup",
    "warmup_cosine",
    "warmup_linear",
    "warmup_stable_decay",
]

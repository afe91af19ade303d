"""The monitored quantity: which metric, which direction, what counts as an improvement.

Theory of operation
-------------------
A policy that watches a metric (early stopping, plateau, checkpoint ranking) holds a
:class:`Comparison`: the resolved direction (``"min"`` or ``"max"``) and the arithmetic that decides
whether ``current`` improves on ``best``. The frameworks disagree in ways that change results, so
every difference is an explicit field:

===================  =========================  ==========================  =======================
rule                 Keras 3                    torch ReduceLROnPlateau     Lightning EarlyStopping
===================  =========================  ==========================  =======================
threshold_mode       ``abs`` (min_delta)        ``rel`` default, or ``abs``  ``abs`` (min_delta)
delta_applies_to     ``current``:               ``best``:                   ``current``
                     ``current + d < best``     ``current < best - d``
                                                ``current < best*(1-d)``
precision            ``float32`` (ops.less on   ``float64`` (Python floats) ``float32`` (tensors)
                     float32 tensors)
strictness           strict                     strict                      strict
===================  =========================  ==========================  =======================

(shown for ``min``; ``max`` mirrors it). ``delta_applies_to`` only changes the last bit of rounding,
but that bit decides ties, and parity means the same decision on every input. With
``precision="float32"`` both sides of the final comparison are float32: Keras subtracts in Python
(float64) and then compares float32 tensors; Lightning subtracts in float32 tensor arithmetic
with the threshold itself rounded to float32 (``float32_arithmetic=True``). For a threshold such
as 0.1 that float32 cannot hold exactly, the two forms disagree on near-ties.

The threshold's sign: Keras takes ``abs(min_delta)``; torch and Lightning keep a negative
threshold, which then accepts a slightly worse value as an improvement.

NaN never improves on anything and nothing improves on a NaN best; a policy decides separately
whether its very first value counts as an improvement without a comparison (Keras) or is compared
with ``+inf`` / ``-inf`` (torch, Lightning).

``mode="auto"`` decides from the metric's name (see :func:`infer_direction`); an unknown name is an
error that tells the user to pass ``mode``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs
import numpy as np

from ._config import rebuild_reduce
from ._decisions import Reason
from ._validation import boolean, finite, metric_name, one_of, plain

__all__ = [
    "Comparison",
    "Direction",
    "MetricNotFoundError",
    "Monitor",
    "coerce_metric",
    "infer_direction",
    "number_metrics",
    "present_keys",
    "read_metric",
]

Direction = Literal["min", "max"]
Mode = Literal["min", "max", "auto"]
ThresholdMode = Literal["abs", "rel"]
DeltaAppliesTo = Literal["current", "best"]
Precision = Literal["float64", "float32"]

MODES: tuple[str, ...] = ("min", "max", "auto")


class MetricNotFoundError(LookupError, RuntimeError):
    """A monitored metric is missing from the metrics of a round and the policy is ``strict``.

    It is a ``LookupError`` (the key is absent) and a ``RuntimeError`` (what Lightning raises).
    """


# Names are split into lowercase word tokens; a token (or a known multi-word suffix) decides.
_MAX_TOKENS = frozenset(
    {
        "acc", "accuracy", "auc", "auroc", "auprc", "ap", "map", "precision", "recall", "f1",
        "fbeta", "f1score", "iou", "miou", "jaccard", "dice", "r2", "bleu", "rouge", "meteor",
        "psnr", "ssim", "ndcg", "mrr", "hit", "hits", "hitrate", "top1", "top5", "correlation",
        "pearson", "spearman", "kappa", "mcc", "reward", "return", "score", "similarity",
        "specificity", "sensitivity", "tpr", "tnr", "ppv", "npv", "cosinesimilarity",
    }
)
_MIN_TOKENS = frozenset(
    {
        "loss", "error", "err", "mse", "mae", "rmse", "mape", "msle", "rmsle", "nll", "ce",
        "crossentropy", "perplexity", "ppl", "wer", "cer", "ter", "fpr", "fnr", "kld", "kl",
        "divergence", "hinge", "huber", "logcosh", "distance", "regret", "cost", "fid", "lpips",
        "bpd", "bpc", "entropy",
    }
)
_PREFIXES = ("val_", "train_", "test_", "valid_", "validation_", "eval_")
_SPLIT = re.compile(r"[^0-9a-z]+")


def infer_direction(metric: str) -> Direction:
    """Decide ``"min"`` or ``"max"`` from a metric's name, or raise ``ValueError``.

    The name is lowercased, a split prefix such as ``val_`` or ``val/`` is dropped, and the name is
    cut into word tokens. A token meaning "higher is better" (accuracy, acc, auc, precision,
    recall, f1, iou, dice, bleu, psnr, ...) gives ``"max"``; one meaning "lower is better" (loss,
    error, mse, mae, perplexity, wer, ...) gives ``"min"``. When tokens of both kinds appear, the
    last one wins (``accuracy_error`` is an error, ``loss_auc`` an AUC): names end with the
    quantity. A name with neither is ambiguous and raises.

    >>> infer_direction("val_loss"), infer_direction("val/acc"), infer_direction("top_k_accuracy")
    ('min', 'max', 'max')
    """
    name = metric.lower()
    for sep in ("/", "."):
        head, _, tail = name.partition(sep)
        if tail and head in {"val", "train", "test", "valid", "validation", "eval"}:
            name = tail
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    tokens = [t for t in _SPLIT.split(name) if t]
    verdict: Direction | None = None
    for token in tokens:
        bare = token.rstrip("0123456789") or token  # "f1" stays "f1"; "acc5" -> "acc"
        if token in _MAX_TOKENS or bare in _MAX_TOKENS:
            verdict = "max"
        elif token in _MIN_TOKENS or bare in _MIN_TOKENS:
            verdict = "min"
    if verdict is None:
        raise ValueError(
            f"cannot infer whether metric {metric!r} should be minimised or maximised from its "
            "name; pass mode='min' or mode='max'"
        )
    return verdict


@attrs.frozen(kw_only=True)
class Comparison:
    """How ``current`` is judged against ``best`` (see the module's table).

    Parameters:
        direction: ``"min"`` (lower is better) or ``"max"``.
        delta: ``min_delta`` / ``threshold``, signed: a positive value demands that much
            improvement; a negative one accepts a slightly worse value (torch and Lightning keep
            the sign; Keras takes ``abs``, which its policies do before building this).
        threshold_mode: ``"abs"`` (best shifted by ``delta``) or ``"rel"`` (by ``best * delta``).
        delta_applies_to: ``"current"`` (Keras, Lightning) or ``"best"`` (torch); ``"rel"`` always
            scales ``best``.
        precision: ``"float64"`` or ``"float32"`` for the final comparison.
        float32_arithmetic: with ``precision="float32"``, also do the shift in float32 with the
            threshold rounded to float32 first (Lightning's tensor arithmetic) instead of in
            float64 (Keras subtracts Python floats, then compares float32 tensors).

    ``improves(current, best)`` is the rule, written once for every combination in
    :meth:`_compile`; it is one numpy-compatible expression, so it takes Python floats (and
    returns a truth value) or numpy arrays (and returns a boolean array, element by element),
    which is how a replay evaluates many runs at once with the very rule a live policy uses.
    A comparison pickles by its parameters (the compiled rule is rebuilt).
    """

    direction: Direction = attrs.field(validator=one_of("min", "max"))
    delta: float = attrs.field(default=0.0, converter=plain, validator=finite)
    threshold_mode: ThresholdMode = attrs.field(default="abs", validator=one_of("abs", "rel"))
    delta_applies_to: DeltaAppliesTo = attrs.field(
        default="current", validator=one_of("current", "best")
    )
    precision: Precision = attrs.field(default="float64", validator=one_of("float64", "float32"))
    float32_arithmetic: bool = attrs.field(default=False, converter=plain, validator=boolean)

    improves: Callable[[Any, Any], Any] = attrs.field(init=False, repr=False, eq=False)
    """``improves(current, best)``: strictly better than ``best`` by more than the threshold."""

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "improves", self._compile())

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuild_reduce(self)

    def _compile(self) -> Callable[[Any, Any], Any]:
        # One closure per configuration (this runs on every round of every policy); each is a
        # single expression valid on floats and on numpy arrays alike.
        d = self.delta
        lo = self.direction == "min"
        rel = self.threshold_mode == "rel"
        on_current = self.delta_applies_to == "current"
        if self.precision == "float64":
            if rel:
                k = (1.0 - d) if lo else (d + 1.0)
                return (lambda c, b: c < b * k) if lo else (lambda c, b: c > b * k)
            if on_current:
                return (lambda c, b: c + d < b) if lo else (lambda c, b: c - d > b)
            return (lambda c, b: c < b - d) if lo else (lambda c, b: c > b + d)
        f32 = np.float32
        if self.float32_arithmetic:
            # Lightning: float32 tensor arithmetic, the threshold a float32 before the shift
            d32 = f32(d)
            if rel:
                k32 = (f32(1.0) - d32) if lo else (d32 + f32(1.0))
                return (
                    (lambda c, b: f32(c) < f32(b) * k32)
                    if lo
                    else (lambda c, b: f32(c) > f32(b) * k32)
                )
            if on_current:
                return (
                    (lambda c, b: f32(c) + d32 < f32(b))
                    if lo
                    else (lambda c, b: f32(c) - d32 > f32(b))
                )
            return (
                (lambda c, b: f32(c) < f32(b) - d32)
                if lo
                else (lambda c, b: f32(c) > f32(b) + d32)
            )
        # Keras: Python (float64) arithmetic, then a comparison of float32 tensors
        if rel:
            k = (1.0 - d) if lo else (d + 1.0)
            return (
                (lambda c, b: f32(c) < f32(b * k)) if lo else (lambda c, b: f32(c) > f32(b * k))
            )
        if on_current:
            return (
                (lambda c, b: f32(c + d) < f32(b)) if lo else (lambda c, b: f32(c - d) > f32(b))
            )
        return (lambda c, b: f32(c) < f32(b - d)) if lo else (lambda c, b: f32(c) > f32(b + d))

    def beyond(self, current: Any, bound: Any) -> Any:
        """Whether ``current`` is strictly better than ``bound`` (no threshold), e.g. a target.

        Floats or numpy arrays, like :attr:`improves`.
        """
        if self.precision == "float32":
            current, bound = np.float32(current), np.float32(bound)
        return current < bound if self.direction == "min" else current > bound

    @property
    def worst(self) -> float:
        """The value every real number improves on (``+inf`` for min, ``-inf`` for max)."""
        return math.inf if self.direction == "min" else -math.inf


def present_keys(metrics: Mapping[Any, Any]) -> str:
    """The keys of ``metrics`` for a message: ``"a, b"``, or ``"none"``."""
    return ", ".join(str(k) for k in metrics) or "none"


def _m_missing(name: str, keys: str) -> str:
    return f"{name!r} not in metrics (present: {keys}); nothing changed"


_ABSENT: Any = object()


@attrs.frozen
class Monitor:
    """The monitored quantity, as one value that policies compose.

    It holds which metric (``name``), which direction (``mode``, ``"auto"`` resolved from the
    name at construction: an unknown name raises here, not after the first epoch), what counts as
    better (a :class:`Comparison` built from ``delta`` and the rule options), and what a missing
    metric means (``strict``). :class:`~trainctl.EarlyStopping`,
    :class:`~trainctl.ReduceLROnPlateau` and :class:`~trainctl.CheckpointPolicy` each hold one,
    and so can a policy of your own::

        monitor = Monitor("val_loss", mode="auto")
        value = monitor.read(obs.metrics, label="MyPolicy(val_loss)")   # None if absent
        if value is not None and monitor.improves(value, best): ...

    Args:
        name: the metric's key in the metrics dict.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (see :func:`infer_direction`).
        delta: the signed improvement threshold: a positive value demands that much
            improvement, a negative one accepts a slightly worse value.
        threshold_mode, delta_applies_to, precision, float32_arithmetic: see
            :class:`Comparison`.
        strict: a missing metric raises :class:`MetricNotFoundError` instead of reading as
            ``None``.

    Attributes:
        direction: ``"min"`` or ``"max"``.
        comparison: the :class:`Comparison`.
        improves: ``improves(current, best)``, the comparison's rule (floats or numpy arrays).
        worst: ``+inf`` for min, ``-inf`` for max: what every real value improves on.
    """

    name: str = attrs.field(validator=metric_name)
    mode: Mode = attrs.field(default="auto", kw_only=True, validator=one_of(*MODES))
    delta: float = attrs.field(default=0.0, kw_only=True, converter=plain, validator=finite)
    threshold_mode: ThresholdMode = attrs.field(
        default="abs", kw_only=True, validator=one_of("abs", "rel")
    )
    delta_applies_to: DeltaAppliesTo = attrs.field(
        default="current", kw_only=True, validator=one_of("current", "best")
    )
    precision: Precision = attrs.field(
        default="float64", kw_only=True, validator=one_of("float64", "float32")
    )
    float32_arithmetic: bool = attrs.field(
        default=False, kw_only=True, converter=plain, validator=boolean
    )
    strict: bool = attrs.field(default=False, kw_only=True, converter=plain, validator=boolean)

    direction: Direction = attrs.field(init=False)
    comparison: Comparison = attrs.field(init=False, repr=False, eq=False)
    improves: Callable[[Any, Any], Any] = attrs.field(init=False, repr=False, eq=False)
    worst: float = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        direction = infer_direction(self.name) if self.mode == "auto" else self.mode
        cmp = Comparison(
            direction=direction,
            delta=self.delta,
            threshold_mode=self.threshold_mode,
            delta_applies_to=self.delta_applies_to,
            precision=self.precision,
            float32_arithmetic=self.float32_arithmetic,
        )
        object.__setattr__(self, "direction", direction)
        object.__setattr__(self, "comparison", cmp)
        object.__setattr__(self, "improves", cmp.improves)
        object.__setattr__(self, "worst", cmp.worst)

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuild_reduce(self)

    def read(self, metrics: Mapping[str, Any], label: str) -> float | None:
        """The metric as a float, or ``None`` if it is absent.

        The metrics are only read (``get``, never ``metrics[name]``), so a ``defaultdict``
        neither invents the value nor gains the key. ``strict``: an absent metric raises
        :class:`MetricNotFoundError` naming ``label`` and the keys present. A value that is not
        a number raises ``TypeError`` naming the key (see :func:`coerce_metric`).
        """
        value = metrics.get(self.name, _ABSENT)
        if value.__class__ is float:
            return value
        if value is _ABSENT:
            if self.strict:
                raise MetricNotFoundError(
                    f"{label}: metric {self.name!r} is not in this call's metrics; "
                    f"present: {', '.join(repr(k) for k in metrics) or 'none'}"
                )
            return None
        return coerce_metric(self.name, value)

    def missing(self, label: str, metrics: Mapping[str, Any]) -> Reason:
        """The reason a policy gives when the metric is absent (event ``"missing_metric"``)."""
        return Reason.lazy(label, "missing_metric", _m_missing, self.name, present_keys(metrics))

    def beyond(self, current: Any, bound: Any) -> Any:
        """Whether ``current`` is strictly better than ``bound``, with no threshold."""
        return self.comparison.beyond(current, bound)


def read_metric(metrics: Mapping[str, Any], key: str) -> float | None:
    """Return ``metrics[key]`` as a float, ``None`` if the key is absent, or raise ``TypeError``.

    Accepted: int, float, numpy scalars, 0-d and one-element numpy arrays, and any tensor-like
    object with ``numel() == 1`` and ``item()`` (torch). Rejected with a ``TypeError`` that names
    the key and the type: strings, ``None``, bools, multi-element arrays and tensors, and tensors
    that require grad (call ``.detach()`` first: a logged value must not keep the graph alive).
    """
    value = metrics.get(key, _ABSENT)
    if value is _ABSENT:
        return None
    if value.__class__ is float:
        return value
    return coerce_metric(key, value)


def number_metrics(metrics: Mapping[Any, Any]) -> dict[str, float]:
    """The numbers among ``metrics`` (floats, ints, numpy scalars, one-element arrays and
    tensors) as floats, by name; anything else (strings, several elements, non-string keys) is
    left out. What a checkpoint's manifest and a decision's ``to_dict()`` record."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if not isinstance(key, str):
            continue
        if value.__class__ is float:
            out[key] = value
            continue
        try:
            out[key] = coerce_metric(key, value)
        except (TypeError, ValueError):
            continue
    return out


def coerce_metric(key: str, value: object) -> float:
    """The non-float part of :func:`read_metric`: convert ``value`` or raise ``TypeError``."""
    if value is None or isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(
            f"metric {key!r} must be a number, got {type(value).__name__} {value!r}"
        )
    if isinstance(value, (int, float, np.integer, np.floating)):
        try:
            return float(value)  # numpy float32 -> the exact float64 value
        except OverflowError:
            raise ValueError(
                f"metric {key!r} is too large for a float: {value!r:.60}"
            ) from None
    if isinstance(value, np.ndarray):
        if value.size != 1 or value.dtype.kind not in "iuf":
            raise TypeError(
                f"metric {key!r} must be a number or a one-element array, got "
                f"ndarray of shape {value.shape} and dtype {value.dtype}"
            )
        return float(value.reshape(-1)[0])
    numel = getattr(value, "numel", None)
    item = getattr(value, "item", None)
    if callable(numel) and callable(item):
        if getattr(value, "requires_grad", False):
            raise TypeError(
                f"metric {key!r} is a tensor that requires grad; pass loss.detach() (or .item()) "
                "so that the decision does not keep the autograd graph alive"
            )
        n = numel()
        if n != 1:
            shape = tuple(getattr(value, "shape", ()))
            raise TypeError(
                f"metric {key!r} must be a number or a one-element tensor, got "
                f"{type(value).__name__} with {n} elements (shape {shape})"
            )
        out = item()
        if isinstance(out, bool) or not isinstance(out, (int, float)):
            raise TypeError(f"metric {key!r} holds a non-real value {out!r}")
        return float(out)
    raise TypeError(f"metric {key!r} must be a number, got {type(value).__name__} {value!r}")

"""The policies' transitions, vectorised over (configurations x runs).

Theory of operation
-------------------
A sweep replays every configuration of a grid on every run. The configurations of one policy
are split into *groups* whose monitor (metric, direction and the whole
:class:`~trainctl.Comparison`) and control-flow options (``rules``, ``start_from_epoch``, a
strip length, ...) are equal; the options that only set a bound (``patience``, ``baseline``,
thresholds, ``alpha``, ``save_top_k``, ...) vary *within* a group, one lane per configuration.
One kernel call replays one group on one chunk of runs, looping in Python over rounds only:

- **shared per run** (arrays of shape ``(R,)``): the part of the state that does not depend on
  the lane parameters before a lane stops: ``best`` and its round, the improvement flag of the
  round (``improves(v, best)``: the group's own ``policy.monitoring.improves``, called once per
  round on all the runs of the chunk), and, where no lane parameter changes it, the patience
  counter. The group's ``monitoring`` is one object, so these are computed by the very rule the
  live policy uses.
- **per lane** (``(C, R)``, one row per configuration): what the lane parameters change (a stop
  at ``wait >= patience``, a baseline that keeps ``wait`` counting, a threshold, a learning
  rate, a top-k set), in the smallest integer types that hold ``T`` rounds.
- a lane that stops is frozen (``active`` false); its result (the best *at the stop*) is read
  back from the shared history at the stop round, or the round before for the stops that leave
  ``best`` unchanged (a non-finite value under ``check_finite``, Lightning's thresholds, which are
  checked before the improvement).

Why sharing is exact: until a lane stops, every transition it made is the group's shared
transition (the lane parameters only decide *whether* it stops); after it stops, nothing changes
(``simulate`` ends at the first stop). Each kernel's docstring gives its rules beside the
policy's; the equivalence tests replay every configuration with :func:`trainctl.simulate` on
streams with ties, plateaus, NaN, infinities and missing values.

=====================  ============================================  =========================
policy                 group key (one comparison per group)          lane parameters
=====================  ============================================  =========================
EarlyStopping          monitoring, rules, start_from_epoch (and the   patience, baseline,
                       signed min_delta with rules="huggingface")     stopping_threshold,
                                                                      divergence_threshold,
                                                                      check_finite,
                                                                      restore_best_weights
ReduceLROnPlateau      monitoring, rules                              patience, cooldown,
                                                                      factor, min_lr, eps
CheckpointPolicy       monitoring, save_best_only                     save_top_k, keep_last_n,
                                                                      keep_every_n_epochs,
                                                                      every_n_epochs,
                                                                      initial_value_threshold
GL                     monitoring                                     alpha, restore
PQ                     monitoring, train_monitor, strip, tol          alpha, restore
UP                     monitoring, strip                              s, restore
=====================  ============================================  =========================
"""

from __future__ import annotations

import math
import string
from collections.abc import Hashable, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .._checkpoint import CheckpointPolicy
from .._early_stopping import EarlyStopping, hf_resets
from .._monitor import MetricNotFoundError
from .._plateau import ReduceLROnPlateau
from .._prechelt import (
    GL,
    PQ,
    UP,
    generalization_loss,
    progress_quotient,
    strip_end,
    training_progress,
)
from ._run import Batch

__all__ = ["KERNELS", "Kernel", "Outcome", "kernel_for"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


class Outcome(NamedTuple):
    """One group's results on one chunk: ``(C, R)`` arrays (``extra``: per kind)."""

    stop_round: IntArray  # -1: never stopped
    best: FloatArray  # NaN: no best
    best_round: IntArray  # -1: no best round
    restore_best: BoolArray  # the weights of best_round are restored (else the last round's)
    extra: dict[str, np.ndarray[Any, Any]]


def _col(values: Sequence[Any], dtype: Any) -> np.ndarray[Any, Any]:
    return np.asarray(values, dtype=dtype).reshape(-1, 1)


def _count_dtype(rounds: int) -> Any:
    """The smallest signed integer type for counters of up to ``rounds`` (and -1)."""
    return np.int16 if rounds < 32_000 else np.int32


def _none_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


class _Lanes:
    """Which lanes still run, and how many rounds each has used (the stop round follows)."""

    def __init__(self, lanes: int, runs: int, rounds: int) -> None:
        self.active = np.ones((lanes, runs), dtype=bool)
        self.used = np.zeros((lanes, runs), dtype=_count_dtype(rounds + 1))

    def commit(self, stop: BoolArray) -> None:
        """End of a round: ``stop`` (modified) marks the lanes stopping in it."""
        np.logical_and(stop, self.active, out=stop)
        np.add(self.used, self.active, out=self.used, casting="unsafe")
        np.logical_xor(self.active, stop, out=self.active)

    def tick(self) -> None:
        """A round in which no lane can stop."""
        np.add(self.used, self.active, out=self.used, casting="unsafe")

    def finished(self, lengths: IntArray, rounds_done: int) -> bool:
        """Whether every lane has stopped or run out of rounds."""
        running = lengths > rounds_done
        if not running.any():
            return True
        return not bool(self.active[:, running].any())

    def stop_rounds(self) -> IntArray:
        return np.where(self.active, -1, self.used.astype(np.int64) - 1)


class _History:
    """The shared best and its round after every round, to read a lane's state at its stop."""

    def __init__(self, rounds: int, runs: int) -> None:
        self.best = np.full((rounds, runs), np.nan)
        self.round = np.full((rounds, runs), -1, dtype=np.int64)

    def record(self, t: int, best: FloatArray, best_round: IntArray) -> None:
        self.best[t] = best
        self.round[t] = best_round

    def at(self, index: IntArray) -> tuple[FloatArray, IntArray]:
        """Best and best round after round ``index`` (``(C, R)``; -1: before the first)."""
        if self.best.shape[0] == 0:  # a chunk of empty runs
            return np.full(index.shape, np.nan), np.full(index.shape, -1, dtype=np.int64)
        none = index < 0
        best = np.where(none, np.nan, _gather(self.best, index))
        rnd = np.where(none, -1, _gather(self.round, index))
        return best, rnd


def _last_index(stop_round: IntArray, lengths: IntArray) -> IntArray:
    """The last round each lane trained: its stop round, else its run's last round."""
    return np.where(stop_round >= 0, stop_round, lengths[None, :] - 1)


def _gather(values: np.ndarray[Any, Any], index: IntArray) -> np.ndarray[Any, Any]:
    """``values[index[c, r], r]`` for a ``(T, R)`` array (index -1 reads row 0), by flat
    ``np.take`` (several times faster than 2-D fancy indexing)."""
    t_len, r_len = values.shape
    if t_len == 0:
        return np.zeros(index.shape, dtype=values.dtype)
    flat = np.maximum(index, 0) * r_len + np.arange(r_len)[None, :]
    out: np.ndarray[Any, Any] = np.take(values.reshape(-1), flat)
    return out


def _missing_error(config: Any, index: int, batch: Batch, run: int, t: int, name: str,
                   present: Sequence[str]) -> MetricNotFoundError:
    return MetricNotFoundError(
        f"{config.label} (configuration {index}, strict=True) on {batch.sources[run]}: round "
        f"{t}: metric {name!r} is not in this round's metrics; present: "
        f"{', '.join(repr(n) for n in present) or 'none'}"
    )


def _check_strict(
    configs: Sequence[Any], indices: Sequence[int], batch: Batch, names: Sequence[str],
    stop_round: IntArray, *, inclusive: bool = False,
) -> None:
    """``strict``: a round a lane reads without one of ``names`` raises, as ``simulate``
    would (a stopped lane reads nothing; ``inclusive``: the stop round itself may miss)."""
    if not any(getattr(c, "strict", False) for c in configs):
        return
    t_len = batch.rounds
    valid = np.arange(t_len)[:, None] < batch.lengths[None, :]
    missing = np.zeros_like(valid)
    for name in names:
        missing |= valid & ~batch.present[name]
    if not missing.any():
        return
    first = np.where(missing.any(axis=0), missing.argmax(axis=0), -1)  # (R,)
    for c, config in enumerate(configs):
        if not getattr(config, "strict", False):
            continue
        s = stop_round[c]
        read = (first >= 0) & ((s < 0) | (first < s) | ((first == s) & inclusive))
        if read.any():
            r = int(np.argmax(read))
            t = int(first[r])
            absent = next(n for n in names if not batch.present[n][t, r])
            there = [n for n in batch.values if batch.present[n][t, r]]
            raise _missing_error(config, indices[c], batch, r, t, absent, there)


# -- the kernels ------------------------------------------------------------------------------


class Kernel:
    """How one policy type is swept (see the module docstring)."""

    kind = "stopping"
    types: tuple[type, ...] = ()

    def check(self, config: Any) -> None:
        """Raise ``ValueError`` for an option the sweep cannot replay exactly."""

    def metrics(self, config: Any) -> tuple[str, ...]:
        """The metrics the policy reads."""
        return (config.monitor,)

    def monitor(self, config: Any) -> tuple[str | None, str | None]:
        """The metric the regret is measured on, and its direction."""
        return config.monitor, config.direction

    def group_key(self, config: Any) -> Hashable:
        raise NotImplementedError

    def run(self, configs: Sequence[Any], indices: Sequence[int], batch: Batch,
            lr: float | None) -> Outcome:
        raise NotImplementedError


class EarlyStoppingKernel(Kernel):
    """:class:`~trainctl.EarlyStopping`, all three ``rules`` (the policy's module docstring).

    Shared per run: ``best``/round, ``imp`` (the round moves ``best``) and, without a
    ``baseline``, ``wait``. Per lane: the stop test, and ``wait`` when a baseline decides
    whether it resets::

        keras:       imp = m & (no best | improves(v, best))
                     wait += m; wait = 0 where imp & (no baseline | improves(v, baseline))
                     stop = m & ~imp & epoch > 0 & wait >= patience
        lightning:   imp = m & improves(v, best or worst); wait = 0 if imp else wait + 1
                     stop = m & ~imp & wait >= patience
        huggingface: better = m & beyond(v, ref); reset = m & (no best | better &
                     |v - ref| > min_delta); wait = 0 if reset else wait + 1
                     best = v if better else ref;  stop = m & wait >= patience
        all:         stop |= m & (beyond(v, stopping_threshold) | beyond(-v, -divergence))
                     stop |= check_finite & m & ~isfinite(v)

    with ``m``: the metric is present and ``epoch >= start_from_epoch``.
    """

    types = (EarlyStopping,)

    def group_key(self, config: EarlyStopping) -> Hashable:
        # Hugging Face's counter compares |v - best| with min_delta as given (its sign kept),
        # beside a monitor that holds |min_delta|: the signed value is part of the rule
        signed = config.min_delta if config.rules == "huggingface" else None
        return ("EarlyStopping", config.monitoring, config.rules, config.start_from_epoch, signed)

    def run(self, configs: Sequence[EarlyStopping], indices: Sequence[int], batch: Batch,
            lr: float | None) -> Outcome:
        p0 = configs[0]
        monitoring = p0.monitoring
        improves, beyond, worst = monitoring.improves, monitoring.beyond, monitoring.worst
        rules, start = p0.rules, p0.start_from_epoch
        values, present, epochs = batch.values[p0.monitor], batch.present[p0.monitor], batch.epochs
        t_len, r_len = values.shape
        c_len = len(configs)
        cdt = _count_dtype(t_len + 1)
        patience = _col([min(c.patience, t_len + 1) for c in configs], cdt)
        baselines = [c.baseline for c in configs]
        with_baseline = any(b is not None for b in baselines)
        baseline = _col([_none_nan(b) for b in baselines], np.float64)
        no_baseline = _col([b is None for b in baselines], bool)
        stop_at = _col([_none_nan(c.stopping_threshold) for c in configs], np.float64)
        diverge = _col([_none_nan(c.divergence_threshold) for c in configs], np.float64)
        thresholds = any(
            c.stopping_threshold is not None or c.divergence_threshold is not None
            for c in configs
        )
        finite_check = _col([c.check_finite for c in configs], bool)
        any_finite_check = bool(finite_check.any())
        hf_delta = p0.min_delta  # Hugging Face's reset test is _early_stopping.hf_resets

        best = np.full(r_len, np.nan)
        has_best = np.zeros(r_len, dtype=bool)
        best_round = np.full(r_len, -1, dtype=np.int64)
        history = _History(t_len, r_len)
        wait = np.zeros((c_len if with_baseline else 1, r_len), dtype=cdt)
        lanes = _Lanes(c_len, r_len, t_len)
        stop = np.empty((c_len, r_len), dtype=bool)
        minus_one = cdt(-1)
        with np.errstate(all="ignore"):
            for t in range(t_len):
                m = present[t]
                if start:
                    m = m & (epochs[t] >= start)
                if not m.any():
                    history.record(t, best, best_round)
                    lanes.tick()
                    continue
                v = values[t]
                if rules == "keras":
                    imp = m & (~has_best | improves(v, best))
                    cond = m & ~imp & (epochs[t] > 0)
                    reset = imp
                elif rules == "lightning":
                    imp = m & improves(v, np.where(has_best, best, worst))
                    cond = m & ~imp
                    reset = imp
                else:  # huggingface: the Trainer's best moves on any strict improvement
                    ref = np.where(has_best, best, worst)
                    imp = m & beyond(v, ref)
                    reset = m & (~has_best | (imp & hf_resets(v, ref, hf_delta)))
                    cond = m
                    fresh = m & ~has_best & ~imp
                    best = np.where(fresh, worst, best)
                best = np.where(imp, v, best)
                best_round = np.where(imp, t, best_round)
                has_best = has_best | (m if rules == "huggingface" else imp)
                history.record(t, best, best_round)
                np.add(wait, m, out=wait, casting="unsafe")
                if with_baseline:  # keras: an improvement resets wait only if it beats it
                    beats = no_baseline | improves(v, baseline)
                    np.multiply(wait, ~(reset & beats), out=wait, casting="unsafe")
                    np.greater_equal(wait, patience, out=stop)
                    np.logical_and(stop, cond, out=stop)
                else:
                    np.multiply(wait, ~reset, out=wait, casting="unsafe")
                    np.greater_equal(np.where(cond, wait, minus_one), patience, out=stop)
                if thresholds:
                    np.logical_or(
                        stop,
                        m & (beyond(1.0 * v, stop_at) | beyond(-1.0 * v, -1.0 * diverge)),
                        out=stop,
                    )
                if any_finite_check:
                    np.logical_or(stop, finite_check & (m & ~np.isfinite(v)), out=stop)
                lanes.commit(stop)
                if t % 16 == 15 and lanes.finished(batch.lengths, t + 1):
                    break
        stop_round = lanes.stop_rounds()
        _check_strict(configs, indices, batch, (p0.monitor,), stop_round)
        last = _last_index(stop_round, batch.lengths)
        # the stops that leave best as it was: check_finite, and Lightning's thresholds
        if any_finite_check or (rules == "lightning" and thresholds):
            with np.errstate(all="ignore"):
                v_s = _gather(values, last)
                m_s = _gather(present, last) & (_gather(epochs, last) >= start)
                before = (stop_round >= 0) & finite_check & m_s & ~np.isfinite(v_s)
                if rules == "lightning" and thresholds:
                    before |= (stop_round >= 0) & m_s & (
                        beyond(1.0 * v_s, stop_at) | beyond(-1.0 * v_s, -1.0 * diverge)
                    )
            last = np.where(before, last - 1, last)
        best_at, round_at = history.at(last)
        restore = _col([c.restore_best_weights for c in configs], bool) & (round_at >= 0)
        return Outcome(stop_round, best_at, round_at, restore, {})


class PlateauKernel(Kernel):
    """:class:`~trainctl.ReduceLROnPlateau`: when it cuts, and the rate after every round.

    Shared: ``best`` and ``imp`` (``best`` moves whatever the cooldown). Per lane (the policy's
    two ``rules``)::

        keras: if cooldown > 0: cooldown -= 1; wait = 0
               if imp: wait = 0
               elif cooldown == 0: wait += 1; if wait >= patience: cut if lr > min_lr (and by
                   more than eps); a cut: wait = 0, cooldown = its length
        torch: wait = 0 if imp else wait + 1; if cooldown > 0: cooldown -= 1; wait = 0
               if wait > patience: cut if lr - new > eps; wait = 0, cooldown = its length

    with ``new = max(lr * factor, min_lr)`` (what the Controller applies). A replay cannot change
    the curve: the rates are those the policy would have asked for on this curve.
    """

    kind = "plateau"
    types = (ReduceLROnPlateau,)

    def check(self, config: ReduceLROnPlateau) -> None:
        if isinstance(config.min_lr, tuple):
            raise ValueError(
                "a sweep replays one learning rate; 'min_lr' must be a float, got "
                f"{config.min_lr!r}"
            )

    def group_key(self, config: ReduceLROnPlateau) -> Hashable:
        return ("ReduceLROnPlateau", config.monitoring, config.rules)

    def run(self, configs: Sequence[ReduceLROnPlateau], indices: Sequence[int], batch: Batch,
            lr: float | None) -> Outcome:
        if lr is None:
            raise ValueError(
                "sweeping ReduceLROnPlateau needs the starting learning rate: sweep(..., lr=...)"
            )
        p0 = configs[0]
        monitoring = p0.monitoring
        improves, worst = monitoring.improves, monitoring.worst
        torch = p0.rules == "torch"
        values, present = batch.values[p0.monitor], batch.present[p0.monitor]
        t_len, r_len = values.shape
        c_len = len(configs)
        cdt = _count_dtype(t_len + 1)
        patience = _col([min(c.patience, t_len + 1) for c in configs], cdt)
        cooldown = _col([min(c.cooldown, t_len + 1) for c in configs], cdt)
        # the policy's own derived values: factor <= 0 read as 0, eps resolved per rules, and
        # the float32 floor Keras compares with
        factor = _col([c._factor for c in configs], np.float64)
        min_lr = _col([c.min_lr for c in configs], np.float64)
        eps = _col([_none_nan(c._eps) for c in configs], np.float64)
        no_eps = np.isnan(eps)
        floor = _col([c._scalar_floor for c in configs], np.float64)

        best = np.full(r_len, np.nan)
        has_best = np.zeros(r_len, dtype=bool)
        best_round = np.full(r_len, -1, dtype=np.int64)
        wait = np.zeros((c_len, r_len), dtype=cdt)
        cool = np.zeros((c_len, r_len), dtype=cdt)
        rate = np.full((c_len, r_len), float(lr))
        reductions = np.zeros((c_len, r_len), dtype=np.int64)
        rates = np.full((c_len, r_len, t_len), np.nan)
        cuts = np.zeros((c_len, r_len, t_len), dtype=bool)
        valid = np.arange(t_len)[:, None] < batch.lengths[None, :]
        history = _History(t_len, r_len)
        with np.errstate(all="ignore"):
            for t in range(t_len):
                m = present[t]
                if m.any():
                    v = values[t]
                    if torch:
                        imp = m & improves(v, np.where(has_best, best, worst))
                    else:
                        imp = m & (~has_best | improves(v, best))
                    best = np.where(imp, v, best)
                    best_round = np.where(imp, t, best_round)
                    has_best |= imp
                    new = np.maximum(rate * factor, min_lr)
                    if torch:
                        wait = np.where(m, np.where(imp, 0, wait + 1), wait).astype(cdt)
                        in_cool = m & (cool > 0)
                        cool = cool - in_cool
                        wait = np.where(in_cool, 0, wait).astype(cdt)
                        trigger = m & (wait > patience)
                        cut = trigger & (rate - new > eps)
                        wait = np.where(trigger, 0, wait).astype(cdt)
                        cool = np.where(trigger, cooldown, cool).astype(cdt)
                    else:
                        in_cool = m & (cool > 0)
                        cool = cool - in_cool
                        wait = np.where(in_cool | imp, 0, wait).astype(cdt)
                        counting = m & ~imp & (cool == 0)
                        wait = wait + counting
                        trigger = counting & (wait >= patience)
                        cut = trigger & (rate > floor) & (no_eps | (rate - new > eps))
                        wait = np.where(cut, 0, wait).astype(cdt)
                        cool = np.where(cut, cooldown, cool).astype(cdt)
                    rate = np.where(cut, new, rate)
                    reductions += cut
                    cuts[:, :, t] = cut
                history.record(t, best, best_round)
                rates[:, :, t] = np.where(valid[t], rate, np.nan)
        _check_strict(configs, indices, batch, (p0.monitor,), np.full((c_len, r_len), -1))
        stop_round = np.full((c_len, r_len), -1, dtype=np.int64)
        best_at, round_at = history.at(_last_index(stop_round, batch.lengths))
        first_cut = (np.where(cuts.any(axis=2), cuts.argmax(axis=2), -1) if t_len
                     else np.full((c_len, r_len), -1, dtype=np.int64))
        extra: dict[str, np.ndarray[Any, Any]] = {
            "lr": rates, "cuts": cuts, "reductions": reductions, "first_cut": first_cut,
        }
        return Outcome(stop_round, best_at, round_at,
                       np.zeros((c_len, r_len), dtype=bool), extra)


class CheckpointKernel(Kernel):
    """:class:`~trainctl.CheckpointPolicy` on the epoch clock: which checkpoints are kept.

    Per lane (a top-k set of at most ``max(save_top_k)`` slots, scores ranked as the policy
    ranks them: NaN worst, float32 with ``precision="float32"``)::

        trigger (every_n_epochs) with the metric present (else nothing is saved):
          save_best_only: save iff no best yet (or initial_value_threshold beaten) or
              improves(v, best); never delete
          else: enters = k == -1 | fewer than k | improves(rank(v), rank(worst kept)),
              the worst kept leaving (among tied worst the oldest);
              save = keep everything | enters | keep_last_n | on keep_every_n_epochs
        kept at the end = saved & (in the top k | among the keep_last_n latest saves |
                                   on keep_every_n_epochs)

    Names must differ per round (``filename`` with ``{epoch}``; a name that repeats overwrites
    a kept checkpoint, which a sweep does not model); step and time triggers need the optimizer
    clock, which a log of rounds does not have.
    """

    kind = "checkpoint"
    types = (CheckpointPolicy,)

    def check(self, config: CheckpointPolicy) -> None:
        if config.every_n_steps or config.every_seconds is not None:
            raise ValueError(
                "a sweep replays evaluation rounds; CheckpointPolicy must trigger on epochs "
                f"(every_n_epochs), got every_n_steps={config.every_n_steps!r}, "
                f"every_seconds={config.every_seconds!r}"
            )
        fields = {f for _, f, _, _ in string.Formatter().parse(config.filename) if f}
        if "epoch" not in fields:
            raise ValueError(
                "a sweep needs a checkpoint name that differs per round: 'filename' must "
                f"contain {{epoch}}, got {config.filename!r}"
            )

    def metrics(self, config: CheckpointPolicy) -> tuple[str, ...]:
        return () if config.monitor is None else (config.monitor,)

    def group_key(self, config: CheckpointPolicy) -> Hashable:
        return ("CheckpointPolicy", config.monitoring, config.save_best_only)

    def run(self, configs: Sequence[CheckpointPolicy], indices: Sequence[int], batch: Batch,
            lr: float | None) -> Outcome:
        p0 = configs[0]
        monitoring = p0.monitoring
        t_len, r_len = batch.rounds, batch.size
        c_len = len(configs)
        epochs = batch.epochs
        valid = np.arange(t_len)[:, None] < batch.lengths[None, :]
        for r in range(r_len):
            e = epochs[: batch.lengths[r], r]
            if len(np.unique(e)) != len(e):
                raise ValueError(
                    f"{batch.sources[r]}: two rounds share an epoch, so their checkpoints "
                    "would share a name; a sweep of CheckpointPolicy needs one round per epoch"
                )
        if monitoring is None:
            values = np.zeros((t_len, r_len))
            present = valid
            direction = "min"
        else:
            values = batch.values[p0.monitor]  # type: ignore[index]
            present = batch.present[p0.monitor]  # type: ignore[index]
            direction = monitoring.direction
        worst = math.inf if direction == "min" else -math.inf
        sign = 1.0 if direction == "min" else -1.0
        f32 = p0.precision == "float32"

        def rank(x: FloatArray) -> FloatArray:  # CheckpointPolicy._rank on arrays
            r = x.astype(np.float32).astype(np.float64) if f32 else x
            return np.where(np.isnan(x), worst, r)

        every_n = _col([c._epoch_n for c in configs], np.int64)
        k = _col([-2 if c.save_top_k is None else c.save_top_k for c in configs], np.int64)
        keep_all = _col([c._keep_all for c in configs], bool)
        keep_last = _col([c.keep_last_n or 0 for c in configs], np.int64)
        keep_every = _col([c.keep_every_n_epochs or 0 for c in configs], np.int64)
        nothing = (k == 0) & ~keep_all & (keep_last == 0) & (keep_every == 0)
        threshold = _col([_none_nan(c.initial_value_threshold) for c in configs], np.float64)
        has_threshold = ~np.isnan(threshold)
        slots = max(1, int(k.max()))
        score = np.full((c_len, r_len, slots), np.nan)
        slot_round = np.full((c_len, r_len, slots), -1, dtype=np.int64)
        fill = np.zeros((c_len, r_len), dtype=np.int64)
        best = np.full((c_len, r_len), np.nan)
        has_best = np.zeros((c_len, r_len), dtype=bool)
        best_round = np.full((c_len, r_len), -1, dtype=np.int64)
        saved = np.zeros((c_len, r_len, t_len), dtype=bool)
        period = np.zeros((c_len, r_len, t_len), dtype=bool)
        missing_read = np.zeros((c_len, r_len), dtype=np.int64) - 1
        improves = None if monitoring is None else monitoring.improves
        with np.errstate(all="ignore"):
            for t in range(t_len):
                e = epochs[t]
                trigger = valid[t] & (every_n > 0) & ((e + 1) % np.maximum(every_n, 1) == 0)
                if not trigger.any():
                    continue
                m, v = present[t], values[t]
                absent = trigger & ~m
                missing_read = np.where((missing_read < 0) & absent, t, missing_read)
                if p0.save_best_only:
                    assert improves is not None
                    ref = np.where(has_best, best, threshold)
                    no_ref = ~has_best & ~has_threshold
                    better = m & (no_ref | improves(v, ref))
                    save = trigger & (~m | better)
                    is_best = save & m
                    best = np.where(is_best, v, best)
                    best_round = np.where(is_best, t, best_round)
                    has_best |= is_best
                    saved[:, :, t] = save
                    continue
                go = trigger & (m if monitoring is not None else True) & ~nothing
                rank_v = rank(v)
                not_full = fill < k
                ranked = k > 0
                # the worst kept: the largest sign * score among filled slots, the oldest of ties
                filled = np.arange(slots)[None, None, :] < fill[:, :, None]
                signed = np.where(filled, sign * score, -np.inf)
                worst_value = signed.max(axis=2)
                tied = filled & (signed == worst_value[:, :, None])
                worst_slot = np.where(tied, slot_round, np.iinfo(np.int64).max).argmin(axis=2)
                worst_score = np.take_along_axis(score, worst_slot[:, :, None], 2)[:, :, 0]
                if improves is None:
                    beats = np.ones((c_len, r_len), dtype=bool)
                else:
                    beats = improves(rank_v, worst_score)
                enters = go & ((k == -1) | (ranked & (not_full | beats)))
                place = np.where(not_full, fill, worst_slot)
                into = enters & ranked
                at = place[:, :, None]
                np.put_along_axis(
                    score, at,
                    np.where(into, rank_v, np.take_along_axis(score, at, 2)[:, :, 0])[:, :, None],
                    2,
                )
                np.put_along_axis(
                    slot_round, at,
                    np.where(into, t, np.take_along_axis(slot_round, at, 2)[:, :, 0])[:, :, None],
                    2,
                )
                fill += into & not_full
                on_period = (keep_every > 0) & ((e + 1) % np.maximum(keep_every, 1) == 0)
                save = go & (keep_all | enters | (keep_last > 0) | on_period)
                saved[:, :, t] = save
                period[:, :, t] = save & on_period
                if improves is not None:
                    is_best = save & m & (~has_best | improves(rank_v, rank(best)))
                    best = np.where(is_best, v, best)
                    best_round = np.where(is_best, t, best_round)
                    has_best |= is_best
        if any(c.strict for c in configs):
            bad = missing_read >= 0
            if bad.any():
                c, r = (int(x[0]) for x in np.nonzero(bad))
                t = int(missing_read[c, r])
                there = [n for n in batch.values if batch.present[n][t, r]]
                raise _missing_error(configs[c], indices[c], batch, r, t, str(p0.monitor),
                                     there)
        if p0.save_best_only:
            kept = saved
        else:
            in_top = np.zeros((c_len, r_len, t_len), dtype=bool)
            ci, ri, si = np.nonzero(np.arange(slots)[None, None, :] < fill[:, :, None])
            in_top[ci, ri, slot_round[ci, ri, si]] = True
            later = np.cumsum(saved[:, :, ::-1], axis=2)[:, :, ::-1]  # saves at or after t
            recent = saved & (later <= keep_last[:, :, None])
            kept = saved & (keep_all[:, :, None] | in_top | recent | period)
        # the checkpoint one would load: the best kept one by rank (the earliest of ties)
        if monitoring is None or t_len == 0:
            pick = np.full((c_len, r_len), -1, dtype=np.int64)
        else:
            ranks = np.where(kept, sign * rank(values).T[None, :, :], np.inf)
            pick = np.where(kept.any(axis=2), ranks.argmin(axis=2), -1)
        extra: dict[str, np.ndarray[Any, Any]] = {
            "kept": kept, "saved": saved, "n_kept": kept.sum(axis=2),
            "n_saved": saved.sum(axis=2), "restored": pick,
        }
        stop_round = np.full((c_len, r_len), -1, dtype=np.int64)
        best = np.where(has_best, best, np.nan)
        return Outcome(stop_round, best, best_round, np.zeros((c_len, r_len), dtype=bool),
                       extra)


class _Lowest(_History):
    """GL, PQ and UP's ``best`` per run (``improves(v, best or worst)``, as the policies track
    it), recorded after every round."""

    def __init__(self, monitoring: Any, rounds: int, runs: int) -> None:
        super().__init__(rounds, runs)
        self.improves, self.worst = monitoring.improves, monitoring.worst
        self.now = np.full(runs, np.nan)
        self.has = np.zeros(runs, dtype=bool)
        self.now_round = np.full(runs, -1, dtype=np.int64)

    def update(self, t: int, m: BoolArray, v: FloatArray) -> None:
        """Round ``t``: the values ``v``, present where ``m``."""
        imp = m & self.improves(v, np.where(self.has, self.now, self.worst))
        self.now = np.where(imp, v, self.now)
        self.now_round = np.where(imp, t, self.now_round)
        self.has |= imp
        self.record(t, self.now, self.now_round)


class _PrecheltKernel(Kernel):
    """Shared pieces of GL, PQ and UP: ``best`` tracking as Lightning's (``improves(v, best or
    +inf)``) and the stop bookkeeping; a stop never leaves ``best`` behind."""

    def _finish(self, configs: Sequence[Any], indices: Sequence[int], batch: Batch,
                lanes: _Lanes, history: _History, names: Sequence[str]) -> Outcome:
        stop_round = lanes.stop_rounds()
        _check_strict(configs, indices, batch, names, stop_round)
        last = _last_index(stop_round, batch.lengths)
        best_at, round_at = history.at(last)
        restore = _col([c.restore_best_weights for c in configs], bool) & (round_at >= 0)
        return Outcome(stop_round, best_at, round_at, restore, {})


class GLKernel(_PrecheltKernel):
    """:class:`~trainctl._prechelt.GL`: shared ``GL(t)``; per lane ``GL(t) > alpha``."""

    types = (GL,)

    def group_key(self, config: GL) -> Hashable:
        return ("GL", config.monitoring)

    def run(self, configs: Sequence[GL], indices: Sequence[int], batch: Batch,
            lr: float | None) -> Outcome:
        p0 = configs[0]
        values, present = batch.values[p0.monitor], batch.present[p0.monitor]
        t_len, r_len = values.shape
        alpha = _col([c.alpha for c in configs], np.float64)
        history = _Lowest(p0.monitoring, t_len, r_len)
        lanes = _Lanes(len(configs), r_len, t_len)
        with np.errstate(all="ignore"):
            for t in range(t_len):
                m, v = present[t], values[t]
                history.update(t, m, v)
                gl = np.where(m & history.has, generalization_loss(v, history.now), np.nan)
                lanes.commit(gl > alpha)
                if t % 16 == 15 and lanes.finished(batch.lengths, t + 1):
                    break
        return self._finish(configs, indices, batch, lanes, history, (p0.monitor,))


class PQKernel(_PrecheltKernel):
    """:class:`~trainctl._prechelt.PQ`: shared ``GL``, window and ``P_k``; per lane ``PQ >
    alpha`` (``P_k <= tol`` stops every lane of the group)."""

    types = (PQ,)

    def metrics(self, config: PQ) -> tuple[str, ...]:
        return (config.monitor, config.train_monitor)

    def group_key(self, config: PQ) -> Hashable:
        return ("PQ", config.monitoring, config.training, config.strip, config.tol)

    def run(self, configs: Sequence[PQ], indices: Sequence[int], batch: Batch,
            lr: float | None) -> Outcome:
        p0 = configs[0]
        values, present = batch.values[p0.monitor], batch.present[p0.monitor]
        train, train_present = batch.values[p0.train_monitor], batch.present[p0.train_monitor]
        epochs = batch.epochs
        t_len, r_len = values.shape
        k = p0.strip
        alpha = _col([c.alpha for c in configs], np.float64)
        window = np.full((k, r_len), np.nan)
        fill = np.zeros(r_len, dtype=np.int64)
        history = _Lowest(p0.monitoring, t_len, r_len)
        lanes = _Lanes(len(configs), r_len, t_len)
        with np.errstate(all="ignore"):
            for t in range(t_len):
                tm = train_present[t]
                if tm.any():  # the window, oldest first, as the policy's tuple
                    window[:-1, tm] = window[1:, tm]
                    window[-1, tm] = train[t, tm]
                    fill = np.minimum(fill + tm, k)
                m, v = present[t], values[t]
                history.update(t, m, v)
                test = m & history.has & (fill >= k) & strip_end(epochs[t], k)
                if not test.any():
                    lanes.tick()
                    continue
                gl = generalization_loss(v, history.now)
                progress = training_progress([window[i] for i in range(k)])
                quotient = progress_quotient(gl, progress)
                no_progress = test & ~(progress > p0.tol)
                q = np.where(test & ~no_progress, quotient, np.nan)
                lanes.commit((q > alpha) | no_progress)
                if t % 16 == 15 and lanes.finished(batch.lengths, t + 1):
                    break
        return self._finish(configs, indices, batch, lanes, history,
                            (p0.monitor, p0.train_monitor))


class UPKernel(_PrecheltKernel):
    """:class:`~trainctl._prechelt.UP`: shared rising-strip count; per lane ``rises >= s``."""

    types = (UP,)

    def group_key(self, config: UP) -> Hashable:
        return ("UP", config.monitoring, config.strip)

    def run(self, configs: Sequence[UP], indices: Sequence[int], batch: Batch,
            lr: float | None) -> Outcome:
        p0 = configs[0]
        beyond = p0.monitoring.beyond
        values, present, epochs = batch.values[p0.monitor], batch.present[p0.monitor], batch.epochs
        t_len, r_len = values.shape
        cdt = _count_dtype(t_len + 1)
        s = _col([min(c.s, t_len + 1) for c in configs], cdt)
        previous = np.full(r_len, np.nan)
        has_previous = np.zeros(r_len, dtype=bool)
        rises = np.zeros(r_len, dtype=cdt)
        history = _Lowest(p0.monitoring, t_len, r_len)
        lanes = _Lanes(len(configs), r_len, t_len)
        with np.errstate(all="ignore"):
            for t in range(t_len):
                m, v = present[t], values[t]
                history.update(t, m, v)
                end = m & strip_end(epochs[t], p0.strip)
                if not end.any():
                    lanes.tick()
                    continue
                rose = end & has_previous & beyond(previous, v)
                rises = np.where(end, np.where(rose, rises + 1, 0), rises).astype(cdt)
                previous = np.where(end, v, previous)
                has_previous |= end
                lanes.commit(np.where(end, rises, cdt(-1)) >= s)
                if t % 16 == 15 and lanes.finished(batch.lengths, t + 1):
                    break
        return self._finish(configs, indices, batch, lanes, history, (p0.monitor,))


KERNELS: tuple[Kernel, ...] = (
    EarlyStoppingKernel(), PlateauKernel(), CheckpointKernel(), GLKernel(), PQKernel(),
    UPKernel(),
)


def kernel_for(policy: Any) -> Kernel:
    """The kernel that sweeps ``policy``'s type, or ``TypeError`` naming the ones there are."""
    for kernel in KERNELS:
        if type(policy) in kernel.types:
            return kernel
    names = ", ".join(t.__name__ for k in KERNELS for t in k.types)
    raise TypeError(f"a sweep replays {names}; got {type(policy).__name__} {policy!r:.80}")

"""Throughput of ``trainctl.replay.sweep`` against looping the scalar policies over the same grid.

Measured in one run (issue 15's targets in brackets):

1. **Transitions per second** [>= 1e8]: ``EarlyStopping`` (Keras rules, ``restore_best_weights``)
   over a grid of 100 configurations (``patience`` 1..20 x ``min_delta`` 5 values: 5 comparison
   groups of 20 lanes) on 65,536 synthetic runs of 100 rounds (noisy decays that overfit, values
   rounded to float32 as a Keras log holds them). A transition is one (configuration, run,
   round) triple of the runs' full histories; the rounds after a configuration's stop are not
   replayed by ``simulate``, so the rate counting only the rounds up to each stop (*live*) is
   printed too.
2. **Against ``trainctl.simulate``** [>= 1000x]: ``simulate`` on a subsample of (configuration,
   run) pairs, timed per round it processed, extrapolated to the rounds the loop over the whole
   grid would process (each pair up to its stop), compared with the sweep's time for that grid.
3. **Against Keras' own ``keras.callbacks.EarlyStopping.on_epoch_end``** [>= 1000x]: a fresh
   callback per pair (``on_train_begin``, then ``on_epoch_end(epoch, logs)`` until it sets
   ``model.stop_training``), on a subsample, extrapolated the same way (KERAS_BACKEND=torch).
4. **Bounded memory**: 1e6 runs x 100 rounds x 100 configurations, the runs generated lazily in
   chunks (``RunArrays`` from an iterator) and only the summary kept (``per_run=False``), in a
   fresh process: wall time and peak RSS (``VmHWM``, else ``resource.getrusage``); then once
   more under ``tracemalloc`` for its peak (tracemalloc doubles the time: not timed).

The subsample results are checked equal to the sweep's. Best-of-3 timings for the throughput
(shared, noisy machines). Run: ``python benchmarks/bench_sweep.py`` (a few minutes; not in CI).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
import tracemalloc
import types
import warnings
from collections.abc import Iterator

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np

import trainctl
from trainctl.replay import RunArrays, expand_grid, sweep

ROUNDS = 100
RUNS = 65_536
BIG_RUNS = 1_000_000
GRID = {"patience": list(range(1, 21)), "min_delta": [0.0, 1e-4, 1e-3, 3e-3, 1e-2]}
POLICY = trainctl.EarlyStopping("val_loss", restore_best_weights=True)
SUBSAMPLE = 300  # (configuration, run) pairs timed with simulate and with Keras


def curves(seed: int, runs: int, rounds: int = ROUNDS) -> np.ndarray:
    """``(runs, rounds)`` validation losses: a decay to a floor, a run-specific overfitting
    slope, multiplicative noise; float32 values, as a framework logs them."""
    rng = np.random.default_rng(seed)
    t = np.arange(rounds, dtype=np.float64)[None, :]
    speed = rng.uniform(5, 40, size=(runs, 1))
    floor = rng.uniform(0.05, 0.5, size=(runs, 1))
    overfit = rng.uniform(0.0, 0.004, size=(runs, 1))
    noise = rng.uniform(0.002, 0.03, size=(runs, 1))
    clean = floor + np.exp(-t / speed) + overfit * t
    out = clean * (1.0 + noise * rng.standard_normal((runs, rounds)))
    return out.astype(np.float32).astype(np.float64)


def batches(total: int, size: int) -> Iterator[RunArrays]:
    for i, start in enumerate(range(0, total, size)):
        yield RunArrays(metrics={"val_loss": curves(1000 + i, min(size, total - start))})


def best_of(n: int, fn: types.FunctionType | object) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
    return best, out


def throughput() -> tuple[float, object, np.ndarray]:
    data = curves(0, RUNS)
    arrays = RunArrays(metrics={"val_loss": data})
    seconds, result = best_of(3, lambda: sweep(POLICY, GRID, arrays))
    return seconds, result, data


def keras_loop(config: trainctl.EarlyStopping, rounds: list[dict[str, float]]) -> int:
    import keras

    cb = keras.callbacks.EarlyStopping(
        monitor="val_loss", mode="min", patience=config.patience, min_delta=config.min_delta,
        restore_best_weights=False,
    )
    cb.set_model(types.SimpleNamespace(stop_training=False))
    cb.on_train_begin()
    for epoch, logs in enumerate(rounds):
        cb.on_epoch_end(epoch, logs)
        if cb.model.stop_training:
            return epoch
    return -1


def loops(result: object, data: np.ndarray, sweep_seconds: float) -> None:
    configs = result.configs  # type: ignore[attr-defined]
    stop = result.stop_round  # type: ignore[attr-defined]
    rng = np.random.default_rng(7)
    pairs = [(int(rng.integers(len(configs))), int(rng.integers(RUNS)))
             for _ in range(SUBSAMPLE)]
    streams = {r: [{"val_loss": float(v)} for v in data[r]] for _, r in pairs}
    live = int(np.where(stop >= 0, stop + 1, ROUNDS).sum())
    print(f"  live transitions (up to each stop): {live:,} "
          f"({live / sweep_seconds:.3g} per second of the sweep)")

    # simulate: Keras rules in float32, as the comparison with Keras below
    t0 = time.perf_counter()
    steps = 0
    for c, r in pairs:
        decisions = trainctl.simulate(configs[c], streams[r])
        steps += len(decisions)
        got = len(decisions) - 1 if decisions[-1].stop else -1
        assert got == int(stop[c, r]), (c, r)
    per_step = (time.perf_counter() - t0) / steps
    loop = per_step * live
    print(f"  simulate: {per_step * 1e6:.2f} us per round ({steps:,} rounds of {SUBSAMPLE} "
          f"pairs); the grid in a loop: {loop:.0f} s (extrapolated) -> sweep is "
          f"{loop / sweep_seconds:,.0f}x faster")

    import keras  # noqa: F401  (import time not counted)

    f32 = sweep(trainctl.EarlyStopping("val_loss", precision="float32"), GRID,
                [streams[r] for r in sorted(streams)])
    index = {r: i for i, r in enumerate(sorted(streams))}
    t0 = time.perf_counter()
    steps = 0
    for c, r in pairs:
        got = keras_loop(configs[c], streams[r])
        steps += got + 1 if got >= 0 else ROUNDS
        assert got == int(f32.stop_round[c, index[r]]), (c, r)
    per_step = (time.perf_counter() - t0) / steps
    loop = per_step * live
    print(f"  Keras EarlyStopping.on_epoch_end: {per_step * 1e6:.2f} us per round; the grid in a "
          f"loop: {loop:.0f} s (extrapolated) -> sweep is {loop / sweep_seconds:,.0f}x faster")


def peak_rss_mib() -> float:
    """This process's peak RSS: ``VmHWM`` (Linux; ``ru_maxrss`` survives ``exec``, so a child
    started from a large parent would report the parent's), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def big(trace: bool) -> None:
    """The bounded-memory run, in its own process so that peak RSS is its own. ``trace``: under
    tracemalloc (which doubles the time), for its peak instead of the time and RSS."""
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    result = sweep(POLICY, GRID, batches(BIG_RUNS, 16_384), per_run=False)
    seconds = time.perf_counter() - t0
    if trace:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"  tracemalloc peak {peak / 2**20:.0f} MiB (a second run, under tracemalloc)")
        return
    rss = peak_rss_mib()
    print(f"  {result.runs:,} runs x {ROUNDS} rounds x {len(result.configs)} configurations = "
          f"{result.transitions:.3g} transitions in {seconds:.1f} s "
          f"({result.transitions / seconds:.3g}/s, curve generation included)")
    print(f"  peak RSS {rss:.0f} MiB, imports included (the runs alone would be "
          f"{BIG_RUNS * ROUNDS * 8 / 2**30:.2f} GiB as float64, the per-run results "
          f"{BIG_RUNS * len(result.configs) * 44 / 2**30:.1f} GiB)")
    summary = result.summary().columns
    print(f"  mean rounds used: patience 1: {summary['rounds_used'][0]:.1f}, patience 20: "
          f"{summary['rounds_used'][19]:.1f}")


def main() -> None:
    if "--big" in sys.argv:
        big(trace="--trace" in sys.argv)
        return
    warnings.simplefilter("ignore")
    print(f"sweep: {len(expand_grid(POLICY, GRID)[0])} EarlyStopping "
          f"configurations x {RUNS:,} runs x {ROUNDS} rounds")
    seconds, result, data = throughput()
    transitions = result.transitions  # type: ignore[attr-defined]
    print(f"  {transitions:.3g} transitions in {seconds:.2f} s (best of 3): "
          f"{transitions / seconds:.3g} transitions/s [target >= 1e8]")
    loops(result, data, seconds)
    print(f"bounded memory: {BIG_RUNS:,} runs generated in chunks, per_run=False")
    for extra in ([], ["--trace"]):
        done = subprocess.run([sys.executable, __file__, "--big", *extra], capture_output=True,
                              text=True, check=True)
        print(done.stdout, end="")


if __name__ == "__main__":
    main()

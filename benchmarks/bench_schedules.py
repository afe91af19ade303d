"""Benchmark trainctl.schedules: warmup + cosine over 1,000,000 steps, and one scalar call.

Run: ``python benchmarks/bench_schedules.py`` (about 15-30 s). Compares, best of N runs each:

1. trainctl, the whole curve at once: ``warmup(cosine(lr, T - W), W)(np.arange(T))``;
2. the same curve as a hand-written numpy expression (target: trainctl <= 1.5x its time);
3. stepping torch's equivalent scheduler, ``SequentialLR([LinearLR, CosineAnnealingLR])`` on an
   SGD optimizer: 100,000 steps are timed and the time is extrapolated (x10) to 1,000,000
   (target: trainctl >= 100x faster);
4. one scalar call of the warmup + cosine schedule and of a plain cosine, by timeit (target:
   <= 1 us per call).

It also checks that the three curves agree, so the timings compare the same work.
"""

from __future__ import annotations

import math
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainctl.schedules import cosine, warmup

LR = 0.1
TOTAL = 1_000_000
WARMUP = 10_000
TORCH_STEPS = 100_000
# torch's LinearLR needs start_factor > 0, so all three curves warm up from 1e-8 of the rate.
START = 1e-8 * LR


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` runs, in seconds (the least disturbed run)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def hand_written(steps: np.ndarray) -> np.ndarray:
    t = steps.astype(np.float64)
    decay = np.minimum(t - WARMUP, TOTAL - WARMUP)
    curve = LR * (1 + np.cos(np.pi * decay / (TOTAL - WARMUP))) / 2
    return np.where(t < WARMUP, START + (LR - START) * (t / WARMUP), curve)


def torch_rates(n: int) -> tuple[float, list[float]]:
    import torch
    from torch.optim import lr_scheduler as L

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=LR)
    scheduler = L.SequentialLR(
        optimizer,
        [
            L.LinearLR(optimizer, 1e-8, 1.0, WARMUP),
            L.CosineAnnealingLR(optimizer, TOTAL - WARMUP),
        ],
        [WARMUP],
    )
    rates = []
    start = time.perf_counter()
    for _ in range(n):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return time.perf_counter() - start, rates


def main() -> None:
    schedule = warmup(cosine(LR, TOTAL - WARMUP), WARMUP, start_lr=START)
    steps = np.arange(TOTAL)

    ours = schedule(steps)
    reference = hand_written(steps)
    np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-18)

    t_ours = best_of(lambda: schedule(steps), 15)
    t_numpy = best_of(lambda: hand_written(steps), 15)

    try:
        t_torch_part, rates = torch_rates(TORCH_STEPS)
        np.testing.assert_allclose(rates, ours[:TORCH_STEPS], rtol=1e-9)
        t_torch: float | None = t_torch_part * (TOTAL / TORCH_STEPS)
    except ImportError:
        t_torch = None

    number = 200_000
    scalar_ns = min(timeit.repeat(lambda: schedule(123_456), number=number, repeat=7))
    scalar_ns *= 1e9 / number
    plain = cosine(LR, TOTAL)
    plain_ns = min(timeit.repeat(lambda: plain(123_456), number=number, repeat=7))
    plain_ns *= 1e9 / number
    baseline_ns = min(timeit.repeat(lambda: math.cos(0.5), number=number, repeat=7))
    baseline_ns *= 1e9 / number

    ratio_numpy = t_ours / t_numpy
    print(f"warmup({WARMUP:,}) + cosine over {TOTAL:,} steps, best of 15")
    print(f"  trainctl, vectorised      {t_ours * 1e3:9.2f} ms")
    print(f"  hand-written numpy        {t_numpy * 1e3:9.2f} ms")
    verdict = "OK" if ratio_numpy <= 1.5 else "MISSED"
    print(f"  ratio trainctl / numpy    {ratio_numpy:9.2f} x   (target <= 1.5x: {verdict})")
    if t_torch is None:
        print("  torch not installed: SequentialLR comparison skipped")
    else:
        speedup = t_torch / t_ours
        print(
            f"  torch SequentialLR, stepped {TORCH_STEPS:,} steps in {t_torch_part:.2f} s, "
            f"extrapolated x{TOTAL // TORCH_STEPS} to {TOTAL:,}: {t_torch:.2f} s"
        )
        verdict = "OK" if speedup >= 100 else "MISSED"
        print(f"  speed-up over torch       {speedup:9.0f} x   (target >= 100x: {verdict})")
    print(f"one scalar call, best of 7 x {number:,} (timeit)")
    verdict = "OK" if scalar_ns <= 1000 else "MISSED"
    print(f"  warmup + cosine           {scalar_ns:9.0f} ns  (target <= 1000 ns: {verdict})")
    verdict = "OK" if plain_ns <= 1000 else "MISSED"
    print(f"  plain cosine              {plain_ns:9.0f} ns  (target <= 1000 ns: {verdict})")
    print(f"  (for scale: math.cos(0.5) through a lambda: {baseline_ns:.0f} ns)")


if __name__ == "__main__":
    main()

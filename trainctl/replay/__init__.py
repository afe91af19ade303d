"""Replay recorded runs under many policy configurations at once.

"What would patience 5 have done on my last 200 runs?" :func:`read_run` reads what a run logged
(Keras and Lightning CSV, Hugging Face ``trainer_state.json``, TensorBoard event files, trainctl's
decision log); :func:`sweep` replays every configuration of a grid on every run, vectorised with
numpy, and answers exactly what :func:`trainctl.simulate` would have answered for each one: the
round it stops at, its best, the weights it would restore and what that costs against the run's
best, the rates a plateau policy would have set, the checkpoints a retention policy would keep.

>>> import trainctl
>>> from trainctl.replay import load_corpus, sweep
>>> result = sweep(trainctl.EarlyStopping(restore_best_weights=True),
...                {"patience": [2, 5, 10, 20]}, load_corpus())
>>> print(result.summary())  # doctest: +SKIP

=====================  ==========================================================================
name                   what
=====================  ==========================================================================
:class:`Run`           one run: a metric dict per evaluation round, with epochs and steps
:class:`RunArrays`     many runs as ``(runs, rounds)`` arrays (for very large sweeps)
:func:`read_run`       a logged run from a file (format detected; :class:`RunFormatError` names
                       the file, line and column)
:func:`sweep`          the grid replayed on the runs -> :class:`SweepResult`
:class:`SweepResult`   per configuration x run arrays, ``summary()``, ``plot(path)``,
                       ``to_csv(path)``
:func:`load_corpus`    the repository's 192 real learning curves (``data/curves.npz``)
=====================  ==========================================================================

The command line (``trainctl replay LOG... --policy ... --grid ...``) is in
:mod:`trainctl.replay._cli`; ``python -m trainctl.replay.table`` prints the Prechelt-style table
of the bundled corpus.
"""

from ._corpus import corpus_arrays, default_corpus_path, load_corpus
from ._formats import FORMATS, RunFormatError, detect_format, read_run
from ._result import NEVER, Summary, SweepResult
from ._run import Run, RunArrays
from ._sweep import expand_grid, sweep

__all__ = [
    "FORMATS",
    "NEVER",
    "Run",
    "RunArrays",
    "RunFormatError",
    "Summary",
    "SweepResult",
    "corpus_arrays",
    "default_corpus_path",
    "detect_format",
    "expand_grid",
    "load_corpus",
    "read_run",
    "sweep",
]

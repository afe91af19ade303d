"""trainctl: training control as pure, resumable state machines.

Policies (early stopping, plateau learning-rate reduction, a NaN guard, checkpoint retention) take
metric dicts and return decisions that explain themselves; a :class:`Controller` composes them
behind ``decision = ctl.step(metrics)``; thin adapters in ``trainctl.adapters`` carry the decisions
out in Keras, PyTorch, Lightning and Hugging Face Transformers; :mod:`trainctl.replay` replays
and sweeps policies over logged runs. ``import trainctl`` imports no ML framework.
"""

from . import effects, replay, schedules, storage
from ._checkpoint import CheckpointDecision, CheckpointPolicy, CheckpointState, KeptCheckpoint
from ._controller import Controller, ControllerStatistics, StoppedDetail, simulate
from ._decisions import EVENTS, Decision, Reason, SaveRequest, epoch_number, epoch_text
from ._early_stopping import EarlyStopping, EarlyStoppingDecision, EarlyStoppingState
from ._log import DecisionLog, LogError, read_log
from ._monitor import Comparison, MetricNotFoundError, Monitor, infer_direction, read_metric
from ._nan import NaNDecision, NaNState, TerminateOnNaN
from ._plateau import PlateauDecision, PlateauState, ReduceLROnPlateau
from ._policy import DECISION_FIELDS, Observation, Policy
from ._prechelt import GL, PQ, UP
from ._printer import Printer
from ._rebuild import ExpressionError, parse_call, register_policy
from ._state import StateError
from .storage import (
    CheckpointCorruptError,
    CheckpointEntry,
    CheckpointSaveError,
    CheckpointStore,
    CheckpointStoreError,
    CheckpointStoreLockedError,
    CorruptManifestError,
    RecoveryReport,
)

__version__ = "0.1.0"

__all__ = [
    "DECISION_FIELDS",
    "EVENTS",
    "GL",
    "PQ",
    "UP",
    "CheckpointCorruptError",
    "CheckpointDecision",
    "CheckpointEntry",
    "CheckpointPolicy",
    "CheckpointSaveError",
    "CheckpointState",
    "CheckpointStore",
    "CheckpointStoreError",
    "CheckpointStoreLockedError",
    "Comparison",
    "Controller",
    "ControllerStatistics",
    "CorruptManifestError",
    "Decision",
    "DecisionLog",
    "EarlyStopping",
    "EarlyStoppingDecision",
    "EarlyStoppingState",
    "ExpressionError",
    "KeptCheckpoint",
    "LogError",
    "MetricNotFoundError",
    "Monitor",
    "NaNDecision",
    "NaNState",
    "Observation",
    "PlateauDecision",
    "PlateauState",
    "Policy",
    "Printer",
    "Reason",
    "RecoveryReport",
    "ReduceLROnPlateau",
    "SaveRequest",
    "StateError",
    "StoppedDetail",
    "TerminateOnNaN",
    "__version__",
    "effects",
    "epoch_number",
    "epoch_text",
    "infer_direction",
    "parse_call",
    "read_log",
    "read_metric",
    "register_policy",
    "replay",
    "schedules",
    "simulate",
    "storage",
]

"""Rebuild configurations from plain data and from call expressions, without ``eval``.

A saved controller state holds its whole configuration: each policy's ``config_dict()`` (its type
and arguments) and the schedule's identity, the factory call that rebuilds it
(``warmup(schedule=cosine(lr=0.1, total_steps=900, final_lr=0.0), warmup_steps=100,
start_lr=0.0)``). :meth:`Controller.from_state_dict` turns those back into objects:

- a policy type is found by name among the registered policies (every built-in, and any class
  passed to :func:`register_policy`), or as ``"module.QualName"`` of a module already imported;
- a schedule's identity, and any expression such as ``"EarlyStopping(monitor='val_loss',
  patience=5)"`` given on a command line, is read by :func:`parse_call`: Python's parser builds
  the syntax tree and only calls of known factories with literal arguments (numbers, strings,
  ``True``/``False``/``None``, ``inf``/``nan``, tuples, lists, nested calls) and references to
  functions of modules already imported are accepted. Nothing is evaluated and nothing is
  imported, so a state file or a command line can never run code.
"""

from __future__ import annotations

import ast
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs

__all__ = ["ExpressionError", "parse_call", "policy_from_config", "register_policy"]

T = TypeVar("T")

_POLICIES: dict[str, type[Any]] = {}


class ExpressionError(ValueError):
    """An expression is not a call of a known factory with literal arguments."""


def register_policy(cls: type[T], name: str | None = None) -> type[T]:
    """Make ``cls`` (a policy class) known by ``name`` (default: its class name) to
    :meth:`Controller.from_state_dict` and :func:`parse_call`. Usable as a decorator."""
    if not isinstance(cls, type):
        raise TypeError(f"'cls' must be a class, got {type(cls).__name__} {cls!r}")
    _POLICIES[name or cls.__name__] = cls
    return cls


def registered_policies() -> dict[str, type[Any]]:
    """The policy classes known by name."""
    _load_builtins()
    return dict(_POLICIES)


def _load_builtins() -> None:
    if "EarlyStopping" in _POLICIES:
        return
    from . import _checkpoint, _early_stopping, _nan, _plateau

    for cls in (
        _early_stopping.EarlyStopping, _plateau.ReduceLROnPlateau, _nan.TerminateOnNaN,
        _checkpoint.CheckpointPolicy,
    ):
        _POLICIES.setdefault(cls.__name__, cls)
    from . import _prechelt  # Prechelt's stopping criteria (GL, PQ, UP)

    for name in _prechelt.__all__:
        cls = getattr(_prechelt, name)
        if isinstance(cls, type) and hasattr(cls, "update"):
            _POLICIES.setdefault(name, cls)


def _find_imported(dotted: str, what: str) -> Any:
    """``module.qual.name`` from a module that is already imported (nothing is imported)."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is None:
            continue
        obj: Any = module
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        return obj
    raise ExpressionError(
        f"{what} {dotted!r} is not known: import its module first (nothing is imported from a "
        "saved state or a command line), or register it with trainctl.register_policy"
    )


def policy_class(name: str) -> type[Any]:
    """A policy class by registered name or by ``module.QualName`` of an imported module."""
    _load_builtins()
    cls = _POLICIES.get(name)
    if cls is None:
        cls = _find_imported(name, "the policy type") if "." in name else None
    if not isinstance(cls, type):
        known = ", ".join(sorted(_POLICIES))
        raise ExpressionError(
            f"the policy type {name!r} is not known (known: {known}); register it with "
            "trainctl.register_policy, or name it module.QualName after importing its module"
        )
    return cls


def _decode_argument(cls: type[Any], name: str, value: Any) -> Any:
    """A ``config_dict()`` value back as the argument: non-finite floats and tuples."""
    field_type = ""
    if attrs.has(cls):
        fields = {f.alias or f.name: f for f in attrs.fields(cls)}
        f = fields.get(name)
        field_type = str(f.type) if f is not None else ""
    if "float" in field_type:
        if isinstance(value, str) and value in ("nan", "inf", "-inf"):
            return float(value)
        if isinstance(value, list):
            return tuple(float(v) if isinstance(v, str) else v for v in value)
    if isinstance(value, list) and "tuple" in field_type:
        return tuple(value)
    return value


def policy_from_config(config: Mapping[str, Any]) -> Any:
    """Build the policy a ``config_dict()`` describes (``{"type": ..., <arguments>}``)."""
    if not isinstance(config, Mapping) or not isinstance(config.get("type"), str):
        raise ExpressionError(f"a policy configuration needs a 'type' string, got {config!r}")
    cls = policy_class(config["type"])
    kwargs = {k: _decode_argument(cls, k, v) for k, v in config.items() if k != "type"}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ExpressionError(f"{config['type']}: {exc}") from None


# -- call expressions ------------------------------------------------------------------------------


def _schedule_factories() -> dict[str, Callable[..., Any]]:
    from . import schedules

    return {
        name: getattr(schedules, name)
        for name in schedules.__all__
        if name not in ("Schedule", "plot") and callable(getattr(schedules, name))
    }


def parse_call(text: str, *, factories: Mapping[str, Callable[..., Any]] | None = None) -> Any:
    """Build the object a call expression describes, without evaluating it.

    ``factories`` are the callables a call may name (default: every registered policy and
    every ``trainctl.schedules`` factory). Arguments may be numbers, strings, ``True``,
    ``False``, ``None``, ``inf``/``nan``, tuples, lists, nested calls, and dotted names of
    functions in modules already imported (a schedule's ``fn``). Anything else raises
    :class:`ExpressionError` naming the part that is refused.

    >>> parse_call("EarlyStopping(monitor='val_loss', patience=5)")
    EarlyStopping(patience=5)
    """
    if factories is None:
        _load_builtins()
        factories = {**_POLICIES, **_schedule_factories()}
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"{text!r} is not an expression: {exc.msg}") from None
    return _build(tree.body, text, factories, top=True)


def _build(node: ast.AST, text: str, factories: Mapping[str, Callable[..., Any]],
           *, top: bool = False) -> Any:
    if isinstance(node, ast.Call):
        name = _dotted(node.func)
        if name is None or name not in factories:
            known = ", ".join(sorted(factories))
            raise ExpressionError(
                f"{text!r}: {ast.unparse(node.func)!r} is not a factory that may be called here "
                f"(known: {known})"
            )
        args = [_build(a, text, factories) for a in node.args]
        if any(isinstance(a, ast.Starred) for a in node.args) or any(
            k.arg is None for k in node.keywords
        ):
            raise ExpressionError(f"{text!r}: * and ** arguments are not accepted")
        kwargs = {k.arg: _build(k.value, text, factories) for k in node.keywords if k.arg}
        try:
            return factories[name](*args, **kwargs)
        except (TypeError, ValueError) as exc:
            raise ExpressionError(f"{text!r}: {name}(...): {exc}") from None
    if top:
        raise ExpressionError(f"{text!r} is not a call such as EarlyStopping(patience=5)")
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool,
                                                                  type(None))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _build(node.operand, text, factories)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_build(e, text, factories) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Name) and node.id in ("inf", "nan"):
        return math.inf if node.id == "inf" else math.nan
    if isinstance(node, (ast.Name, ast.Attribute)):
        dotted = _dotted(node)
        if dotted is not None and "." in dotted:
            return _find_imported(dotted, "the function")
    raise ExpressionError(
        f"{text!r}: {ast.unparse(node)!r} is not a literal (numbers, strings, True/False/None, "
        "tuples, lists and calls of known factories only)"
    )


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None

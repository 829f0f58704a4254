"""Config dataclasses: validation, JSON round trips, and automatic CLI flags.

Every model, dataset and run has a dataclass config. Fields carry their help text in
``field(metadata={"help": ...})``; a ``validate()`` method (optional) raises ``ConfigError``.
Type checks come first and hold for every field: a float (alone or in a tuple) must be finite (NaN
and infinity are refused) unless its field says ``finite=False``; a fixed-length tuple gets exactly
its number of values.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import re
import types
import typing
from typing import Any, Literal, get_args, get_origin

from genlab.errors import ConfigError


def field(default: Any = dataclasses.MISSING, help: str = "", finite: bool = True, **kw) -> Any:
    """A dataclass field with a help string (shown by ``--help``). ``finite=False`` lets a float field
    take NaN or infinity (refused by default)."""
    metadata = {"help": help, "finite": finite}
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata, **kw)
    return dataclasses.field(default=default, metadata=metadata, **kw)


def _resolved_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp):
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(name: str, tp, value, finite: bool = True):
    """Convert a JSON / CLI value to the annotated type, with a clear error. ``finite``: floats must
    be finite numbers."""
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{name}: a value is required")
    origin = get_origin(tp)
    try:
        if origin is Literal:
            choices = get_args(tp)
            if value not in choices:
                raise ConfigError(f"{name}: {value!r} is not one of {', '.join(map(str, choices))}")
            return value
        if origin in (tuple, list):
            args = get_args(tp)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise ConfigError(f"{name}: expected a list of values, got {value!r}")
            value = list(value)
            fixed = origin is tuple and args and Ellipsis not in args   # e.g. tuple[float, float]
            if fixed and len(value) != len(args):
                raise ConfigError(f"{name}: expected {len(args)} value{'s' * (len(args) > 1)}, got {len(value)} "
                                  f"({' '.join(map(str, value))})")
            inner = args if fixed else [args[0] if args else Any] * len(value)
            seq = [_coerce(name, t, v, finite) for t, v in zip(inner, value)]
            return tuple(seq) if origin is tuple else seq
        if tp is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ConfigError(f"{name}: expected true/false, got {value!r}")
            return bool(value)
        if tp in (int, float, str):
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ConfigError(f"{name}: expected an integer, got {value!r}")
            out = tp(value)
            if tp is float and finite and not math.isfinite(out):
                raise ConfigError(f"{name}: expected a finite number, got {value}")
            return out
    except (TypeError, ValueError, OverflowError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{name}: cannot read {value!r} as {getattr(tp, '__name__', tp)}") from None
    return value


def from_dict(cls, data: dict | None, where: str = "") -> Any:
    """Build config ``cls`` from a dict, rejecting unknown keys and validating."""
    data = dict(data or {})
    hints = _resolved_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown option(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(names))}")
    finite = {f.name: f.metadata.get("finite", True) for f in dataclasses.fields(cls)}
    kwargs = {k: _coerce(k, hints[k], v, finite[k]) for k, v in data.items()}
    return check(cls(**kwargs))


def check(cfg):
    """Type-check every field and run the config's own ``validate()``."""
    hints = _resolved_types(type(cfg))
    for f in dataclasses.fields(cfg):
        object.__setattr__(cfg, f.name, _coerce(f.name, hints[f.name], getattr(cfg, f.name),
                                                f.metadata.get("finite", True)))
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    return cfg


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def require(cond: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``cond`` holds; used in ``validate()``."""
    if not cond:
        raise ConfigError(message)


# ---------------------------------------------------------------- CLI flags
def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _help_with_default(help: str, default: Any, effective: bool) -> str:
    """``help`` with "(default: X)" appended. A help that states its own default ("(default: the model's)",
    for a field left ``None``) keeps it, unless ``effective`` gives the value that will really be used; an
    unset default (``None``, empty) shows none: its help says what leaving it out means."""
    if effective:
        help = re.sub(r"\s*\(default[^)]*\)", "", help)
    elif "(default" in help or default is None or default == "" or default == () or default == []:
        return help
    shown = " ".join(map(str, default)) if isinstance(default, (tuple, list)) else default   # as typed
    if isinstance(shown, str) and not shown.strip():
        shown = repr(shown)   # a newline or a space, visibly
    return f"{help} (default: {shown})"


def add_config_flags(parser: argparse.ArgumentParser, cls, group_title: str, taken: set[str],
                     prefix: str = "", defaults: dict | None = None) -> dict[str, str]:
    """Add one ``--flag`` per field of ``cls``. Returns {dest: field name}.

    Defaults are left as ``None`` so that only flags the user typed override the config.
    A name already ``taken`` by another group is prefixed (``--data-n``) to stay unique. ``defaults``
    are the effective defaults to show where they differ from the dataclass's (e.g. a model's
    preferred pixel view).
    """
    group = parser.add_argument_group(group_title)
    hints = _resolved_types(cls)
    dests = {}
    for f in dataclasses.fields(cls):
        name = flag_name(f.name)
        if name in taken:
            name = flag_name(f"{prefix}{f.name}")
        taken.add(name)
        dest = f"{cls.__name__}.{f.name}"
        tp, _ = _unwrap_optional(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if defaults and f.name in defaults:
            default = defaults[f.name]
        help_text = _help_with_default(f.metadata.get("help", ""), default, bool(defaults and f.name in defaults))
        kw: dict[str, Any] = dict(dest=dest, default=None, help=help_text)
        origin = get_origin(tp)
        if tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif origin is Literal:
            kw["choices"] = list(get_args(tp))
            kw["type"] = type(get_args(tp)[0])
        elif origin in (tuple, list):
            inner = (get_args(tp) or (str,))[0]
            kw["nargs"] = "+"
            kw["type"] = inner if inner in (int, float, str) else str
        elif tp in (int, float, str):
            kw["type"] = tp
        if tp is not bool and origin is not Literal:
            kw["metavar"] = f.name.upper()
        group.add_argument(name, **kw)
        dests[dest] = f.name
    return dests


def overrides_from_args(args: argparse.Namespace, cls) -> dict:
    """The fields of ``cls`` that the user set on the command line."""
    out = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f"{cls.__name__}.{f.name}", None)
        if value is not None:
            out[f.name] = value
    return out

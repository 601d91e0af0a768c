"""Settings dataclasses from plain dicts (parsed YAML/JSON): one strict rule for every settings file.

Pure Python (no numpy, no torch). Used by the training config (:mod:`livecell_seg.training.config`), a model
folder's :class:`~livecell_seg.model.folder.ModelConfig` and post-processing parameters
(:class:`~livecell_seg.inference.postprocess.PostprocessParams`): unknown keys are one-line errors naming the
key, values are converted to the field's type or refused with the dotted key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from .errors import LivecellError


def convert_value(tp: Any, value: Any, where: str) -> Any:
    """Convert a YAML/JSON value to the annotated type ``tp`` (nested dataclasses, lists, unions)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise LivecellError(f"{where}: expected a mapping, got {value!r}")
        return settings_from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return convert_value(a, value, where)
            except LivecellError as e:
                errors.append(str(e))
        raise LivecellError(errors[0] if len(errors) == 1 else f"{where}: invalid value {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, dict):  # a single source written without the list dash
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise LivecellError(f"{where}: expected a list, got {value!r}")
        return [convert_value(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise LivecellError(f"{where}: expected a mapping, got {value!r}")
        return {convert_value(kt, k, where): convert_value(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise LivecellError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise LivecellError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        x: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                x = float(value)
            except OverflowError:
                x = math.inf
        elif isinstance(value, str):
            try:
                x = float(value)
            except ValueError:
                pass
        if x is None:
            raise LivecellError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(x):  # NaN or infinite: never a meaningful setting (issue 22)
            raise LivecellError(f"{where}: expected a finite number, got {value!r}")
        return x
    if tp is str:
        if isinstance(value, str):
            return value
        raise LivecellError(f"{where}: expected a string, got {value!r}")
    return value


def bounded(default: Any, lo: float | None, hi: float | None) -> Any:
    """A dataclass field with a default and the range ``[lo, hi]`` its value must lie in (None: no
    bound that side), checked by :func:`settings_from_dict` and :func:`check_ranges`. Every size,
    count, kernel and rate of a settings file has one: the work one value can ask for is bounded
    before any work starts (issue 22)."""
    return dataclasses.field(default=default, metadata={"range": (lo, hi)})


def field_range(f: dataclasses.Field) -> tuple[float | None, float | None] | None:
    """The ``[lo, hi]`` of a field made by :func:`bounded` (None when it has none)."""
    return f.metadata.get("range")


def check_ranges(obj: Any, where: str = "config") -> None:
    """Refuse (one-line :class:`LivecellError` naming the dotted key) a value of a :func:`bounded`
    field of the dataclass ``obj`` outside its range (for a mapping: each of its values)."""
    for f in dataclasses.fields(obj):
        rng = field_range(f)
        v = getattr(obj, f.name)
        if rng is None or v is None:
            continue
        key = f"{where}.{f.name}" if where != "config" else f.name
        values = list(v.values()) if isinstance(v, dict) else list(v) if isinstance(v, list) else [v]
        for x in values:
            if isinstance(x, str) or x is None:
                continue  # e.g. "auto" where a union type allows it
            lo, hi = rng
            if (lo is not None and x < lo) or (hi is not None and x > hi):
                lo_s = "-inf" if lo is None else f"{lo:g}"
                hi_s = "inf" if hi is None else f"{hi:g}"
                raise LivecellError(f"{key} must be in [{lo_s}, {hi_s}], got {x!r}")


def check_keys(cls: type, d: dict[str, Any], where: str, extra: tuple[str, ...] = ()) -> None:
    """Refuse keys of ``d`` that are not fields of the dataclass ``cls`` (nor in ``extra``).

    One line naming the unknown key(s) and the known ones (a typo in a settings file is an error,
    never silently ignored).
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names - set(extra))
    if unknown:
        raise LivecellError(
            f"{where}: unknown key(s) {', '.join(map(str, unknown))}; known: {', '.join(sorted(names))}"
        )


def settings_from_dict(
    cls: type, d: dict[str, Any], where: str = "config", extra: tuple[str, ...] = ()
) -> Any:
    """Build the dataclass ``cls`` from a parsed YAML/JSON mapping: the one rule for settings.

    Unknown keys are errors (:func:`check_keys`; ``extra`` names keys that are allowed and
    dropped, such as the ``tuning`` record of a ``postprocess.json``); each value is converted to
    its field's annotated type by :func:`convert_value` (nested dataclasses, lists, optionals),
    an error naming the dotted key ``where.key``. ``where="config"`` names keys without a prefix.
    """
    if not isinstance(d, dict):
        raise LivecellError(f"{where}: expected a mapping, got {d!r}")
    check_keys(cls, d, where, extra)
    hints = typing.get_type_hints(cls)
    kwargs = {
        k: convert_value(hints[k], v, f"{where}.{k}" if where != "config" else k)
        for k, v in d.items()
        if k not in extra
    }
    obj = cls(**kwargs)
    check_ranges(obj, where)
    return obj

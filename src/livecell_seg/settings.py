"""Settings dataclasses from plain dicts (parsed YAML/JSON): one strict rule for every settings file.

Pure Python (no numpy, no torch). Used by the training config (:mod:`livecell_seg.model.config`), a model
folder's :class:`~livecell_seg.model.folder.ModelConfig` and post-processing parameters
(:class:`~livecell_seg.inference.postprocess.PostprocessParams`): unknown keys are one-line errors naming the
key, values are converted to the field's type or refused with the dotted key.
"""

from __future__ import annotations

import dataclasses
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
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise LivecellError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise LivecellError(f"{where}: expected a string, got {value!r}")
    return value


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
    return cls(**kwargs)

"""Checks of single values (counts, rates, choices), written once so every message reads the same:
``expected <name> to be <what>, got <value>``."""
from __future__ import annotations

import math
import numbers
from typing import Iterable


def _integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value, least: int = 1, allow_none: bool = False, prefix: str = ""):
    """``value`` unchanged if it is an integer >= ``least`` (or None where allowed), else ValueError."""
    if value is None and allow_none:
        return None
    if not _integer(value) or value < least:
        what = {1: "a positive integer", 0: "a non-negative integer"}.get(least, f"an integer >= {least}")
        raise ValueError(f"{prefix}expected {name} to be {what}{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def check_positive(name: str, value) -> float:
    """``value`` as a float if it is a positive finite number, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"expected {name} to be a positive finite number, got {value!r}")
    return float(value)


def check_non_negative(name: str, value) -> float:
    """``value`` as a float if it is a finite number >= 0, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"expected {name} to be a non-negative finite number, got {value!r}")
    return float(value)


def check_fraction(name: str, value) -> float:
    """``value`` as a float if it is a number in [0, 1), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 <= value < 1):
        raise ValueError(f"expected {name} to be a number in [0, 1), got {value!r}")
    return float(value)


def check_bool(name: str, value) -> bool:
    """``value`` if it is True or False, else ValueError."""
    if not isinstance(value, bool):
        raise ValueError(f"expected {name} to be True or False, got {value!r}")
    return value


def check_choice(name: str, value, choices: Iterable):
    """``value`` unchanged if it is one of ``choices``, else ValueError listing them."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"expected {name} to be one of {', '.join(map(str, choices))}, got {value!r}")
    return value

"""Checks for configuration values, raising ValueError messages that name the option.

Options are named as they are written in a config or on the command line
(``model.adapter.rank``), so that the message points at the line to change.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive_int(option: str, value: Any) -> None:
    """``value`` is an integer > 0."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{option} must be a positive integer; got {value!r}")


def non_negative_int(option: str, value: Any) -> None:
    """``value`` is an integer >= 0."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{option} must be an integer >= 0; got {value!r}")


def positive_number(option: str, value: Any) -> None:
    """``value`` is a finite number > 0."""
    if not _is_number(value) or value <= 0:
        raise ValueError(f"{option} must be a positive number; got {value!r}")


def non_negative_number(option: str, value: Any) -> None:
    """``value`` is a finite number >= 0."""
    if not _is_number(value) or value < 0:
        raise ValueError(f"{option} must be a number >= 0; got {value!r}")


def in_unit_interval(
    option: str, value: Any, *, low_open: bool = False, high_open: bool = False
) -> None:
    """``value`` is a number in [0, 1], with either end excluded when asked."""
    ok = _is_number(value) and 0 <= value <= 1
    ok = ok and not (low_open and value == 0) and not (high_open and value == 1)
    if not ok:
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise ValueError(f"{option} must be a number in {interval}; got {value!r}")


def one_of(option: str, value: Any, choices: Iterable[Any]) -> None:
    """``value`` is one of ``choices``."""
    allowed = tuple(choices)
    if value not in allowed:
        listed = ", ".join(str(c) for c in allowed)
        raise ValueError(f"{option} must be one of {listed}; got {value!r}")

"""Checks of the plain-number options, shared by every entry point (``auto_layer_decay``, the
post's ``get_parameter_groups``, the Trainer arguments, the command line)."""

from __future__ import annotations

import math
import numbers

from .scales import as_number


def check_number(what: str, value: object, *, allow_none: bool = False, positive: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite real number ``>= 0`` (``> 0`` with
    ``positive``), or ``None`` with ``allow_none``. A 0-d tensor counts as its value.

    A negative learning rate or weight decay is accepted by torch's optimizers and trains the
    wrong way (gradient ascent, weights pushed outwards), so it is refused here.

    Example:
        >>> check_number("weight_decay", -0.5)
        Traceback (most recent call last):
        ...
        ValueError: weight_decay must be a finite number >= 0, got -0.5
    """
    value = as_number(value)
    if value is None and allow_none:
        return
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{what} must be a finite number {bound}, got {value!r}")


def check_flag(what: str, value: object) -> None:
    """Raise ``TypeError`` unless ``value`` is a bool: ``"no"`` or ``"False"`` are truthy strings,
    and taking them for True would turn on what the user meant to turn off."""
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be True or False, got {value!r} ({type(value).__name__})")

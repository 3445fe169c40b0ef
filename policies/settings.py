"""Checks of numeric settings that name each unsound one, shared by every node and the controller.

ROS-free on purpose: the controller uses it without rclpy. A rule is (accepted, what the value must
be); NaN fails every comparison, so it fails every rule below.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

Rule = tuple[Callable[[float], bool], str]


def at_least(low: float, note: str = "") -> Rule:
    """A finite number >= ``low``; ``note`` says what a value means, e.g. "(0 = off)"."""
    return (lambda v: low <= v < math.inf), f"a finite number >= {low:g}{' ' + note if note else ''}"


def above(low: float, note: str = "") -> Rule:
    """A finite number > ``low``."""
    return (lambda v: low < v < math.inf), f"a finite number > {low:g}{' ' + note if note else ''}"


POSITIVE_OR_INF: Rule = ((lambda v: v > 0.0), "> 0 (inf: no check)")


def unsound(settings: object, rules: Mapping[str, Rule]) -> list[str]:
    """Each attribute of ``settings`` that breaks its rule, named with its value and what it must be
    (a list: every entry must pass); [] when all are sound."""
    found = []
    for name, (accepted, must) in rules.items():
        value = getattr(settings, name)
        if isinstance(value, list | tuple):
            if not all(accepted(float(v)) for v in value):
                found.append(f"{name} {list(value)} has an entry that is not {must}")
        elif not accepted(float(value)):
            found.append(f"{name} is {value!r}: must be {must}")
    return found

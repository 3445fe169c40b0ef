"""Checks of numeric settings that name each unsound one, shared by every node and the controller,
and the controller's safety settings (:class:`SafetyConfig`, also the policy node's parameters).

ROS-free on purpose: the controller uses it without rclpy. A rule is (accepted, what the value must
be); NaN fails every comparison, so it fails every rule below.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

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


@dataclass
class SafetyConfig:
    stale_periods: float = 2.0
    """Sensors older than this many control periods trip the watchdog (-> DAMPING): when they stop,
    the command issued within 3 control periods of the last sample is already damped (the first tick
    after 2 periods). Also the most a sample's stamp may lie in the future."""
    max_target_step: float = 0.25
    """Largest change of a joint target per control step, rad."""
    joint_limit_margin: float = 0.02
    """Targets stay this far inside the joint limits, rad."""
    cmd_timeout_s: float = 0.5
    """After this long without /cmd_vel the command starts decaying to zero..."""
    cmd_decay_s: float = 0.5
    """...reaching zero after this much longer."""
    joint_pos_tolerance: float = 0.5
    """A measured joint position further than this outside the joint limits is a sensor fault, rad."""
    max_joint_velocity: float = 60.0
    """A measured joint speed above this is a sensor fault, rad/s (Go2/Go1 motors reach ~30)."""
    max_angular_velocity: float = 40.0
    """A measured base angular speed above this is a sensor fault, rad/s (IMUs saturate at ~35)."""
    max_cmd_rate_hz: float = 1000.0
    """/cmd_vel published faster than this for two control periods is a runaway publisher: a flood
    crowds sensor data out of the middleware (joint states arrive late), so it is a fault
    (-> DAMPING) rather than a wait for the watchdog. Teleop sends 10-100 Hz."""
    clock_jump_s: float = 1.0
    """The clock moving forward by more than this between two ticks, or backward by more than a
    control period, is a clock jump (sim reset, NTP step): time-based safety cannot be trusted."""
    standup_s: float = 2.0
    """Seconds to interpolate from the measured pose to the default pose (counted from the first
    stand-up tick)."""

    def problems(self) -> list[str]:
        """Each setting that would make a filter let a bad command through (a NaN step limit turns
        every target into NaN; a margin wider than half a joint's range puts the lower clip bound
        above the upper), named with its value and what it must be; [] when all are sound."""
        return unsound(self, {
            "stale_periods": at_least(1), "max_target_step": above(0, "(rad per step)"),
            "joint_limit_margin": at_least(0, "(rad)"), "cmd_timeout_s": at_least(0), "cmd_decay_s": at_least(0),
            "joint_pos_tolerance": at_least(0, "(rad)"), "max_joint_velocity": POSITIVE_OR_INF,
            "max_angular_velocity": POSITIVE_OR_INF, "max_cmd_rate_hz": POSITIVE_OR_INF, "clock_jump_s": above(0),
            "standup_s": at_least(0),
        })  # fmt: skip

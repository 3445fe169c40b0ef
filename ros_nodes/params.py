"""Node parameters declared up front from a typed dataclass; unknown ones are an error."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.node import Node
from rclpy.parameter import Parameter

T = TypeVar("T")

_TYPES = {
    "bool": ParameterType.PARAMETER_BOOL,
    "int": ParameterType.PARAMETER_INTEGER,
    "float": ParameterType.PARAMETER_DOUBLE,
    "str": ParameterType.PARAMETER_STRING,
    "list[str]": ParameterType.PARAMETER_STRING_ARRAY,
    "list[float]": ParameterType.PARAMETER_DOUBLE_ARRAY,
}
BUILTIN = {"use_sim_time"}


def declare(node: Node, spec: type[T]) -> tuple[T, list[str]]:
    """Declare every field of dataclass ``spec`` with its default and docstring-free description.

    Returns the values (overrides from ``--params-file`` / ``-p`` applied) and the names of
    overrides that match no declared parameter (a typo in a parameter file).
    """
    values: dict[str, Any] = {}
    for f in dataclasses.fields(spec):
        key = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        key = str(f.type) if key == "list" else key
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        descriptor = ParameterDescriptor(type=_TYPES[key], description=f.metadata.get("doc", ""))
        if isinstance(default, list) and not default:  # an empty list would be typed BYTE_ARRAY
            default = Parameter.Type.STRING_ARRAY if key == "list[str]" else Parameter.Type.DOUBLE_ARRAY
        value = node.declare_parameter(f.name, default, descriptor).value
        if key == "list[float]":
            value = [float(v) for v in (value or [])]
        elif key == "list[str]":
            value = list(value or [])
        values[f.name] = value
    declared = set(values) | BUILTIN
    unknown = sorted(set(node._parameter_overrides) - declared)  # overrides given for this node
    return spec(**values), unknown


def doc(text: str) -> dict[str, str]:
    return {"doc": text}

"""What the test suite needs installed, and the one way a test asks for it.

In CI (``CI=true``) a missing package fails the run, naming the package and the command that
installs it: a suite whose ROS half skipped because the ROS wheels did not install would
otherwise stay green. Elsewhere a test whose package is missing is skipped, and the skip names the
optional extra to install.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

INSTALL = {
    "rclpy": "pip install -e '.[ros]'",
    "mujoco": "pip install -e .",
    "onnxruntime": "pip install -e .",
    "unitree_sdk2py": "pip install -e '.[unitree]'",
}
"""Each package the suite needs, and the command (from the checkout) that installs it."""


def in_ci() -> bool:
    """CI services set ``CI=true``; ``0``, ``false``, ``no`` and unset mean a developer's machine."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing() -> dict[str, str]:
    """Each package of :data:`INSTALL` that does not import: its import error."""
    errors = {}
    for name in INSTALL:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
    return errors


def message(name: str, error: str) -> str:
    return f"{name} does not import ({error}); install it with `{INSTALL[name]}`"


def require(name: str) -> ModuleType:
    """The imported module; where it does not import, fail under CI, else skip naming its install command.

    Use at module level (``rclpy = require("rclpy")``) or inside a test or fixture.
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        text = message(name, f"{type(exc).__name__}: {exc}")
        if in_ci():
            pytest.fail(f"CI=true: {text}", pytrace=False)
        pytest.skip(text, allow_module_level=True)

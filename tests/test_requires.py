"""A package the suite needs that does not import fails the run under CI=true, naming the package and
its install command, and elsewhere skips naming it: the ROS half of the suite cannot vanish silently.

Each case runs pytest in a fresh interpreter whose import system refuses one package, as a machine
where its wheel did not install would.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BLOCK = textwrap.dedent(
    """
    import sys

    class Missing:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == {blocked!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Missing())
    """
)


def run_without(blocked: str, code: str, ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-c", BLOCK.format(blocked=blocked) + textwrap.dedent(code)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip


def pytest_main(*args: str) -> str:
    return f"import pytest; sys.exit(pytest.main({['-p', 'no:cacheprovider', *args]!r}))"


@pytest.mark.parametrize(
    ("blocked", "install"),
    [("rclpy", "pip install -e '.[ros]'"), ("mujoco", "pip install -e ."), ("onnxruntime", "pip install -e .")],
)
def test_under_ci_a_missing_package_ends_the_run_naming_it(blocked: str, install: str) -> None:
    run = run_without(blocked, pytest_main("-q", "--collect-only", "tests/ros_nodes/test_cdr.py"), ci="true")
    out = run.stdout + run.stderr
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, out[-3000:]
    assert f"{blocked} does not import" in out and f"install it with `{install}`" in out, out[-3000:]


def test_without_ci_the_ros_tests_skip_naming_the_extra() -> None:
    run = run_without("rclpy", pytest_main("-q", "-rs", "tests/ros_nodes/test_cdr.py"), ci="false")
    out = run.stdout + run.stderr
    assert run.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, out[-3000:]  # (the module skipped as a whole)
    assert "1 skipped" in out and "rclpy does not import" in out and "pip install -e '.[ros]'" in out, out[-3000:]


def test_require_fails_under_ci_and_skips_elsewhere() -> None:
    """The helper each test calls: the conftest's check ends the run first, but a test run without
    it (a single file from another rootdir, a fixture called later) must not skip under CI either."""
    code = """
        import pytest
        from trot.testing.requires import require
        assert require("mujoco").__name__ == "mujoco"
        try:
            require("rclpy")
        except BaseException as exc:
            print(type(exc).__name__, exc)
    """
    ci = run_without("rclpy", code, ci="true")
    assert ci.returncode == 0, ci.stderr[-3000:]
    assert ci.stdout.startswith("Failed CI=true: rclpy does not import (ModuleNotFoundError"), ci.stdout
    assert "pip install -e '.[ros]'" in ci.stdout
    local = run_without("rclpy", code, ci="0")
    assert local.returncode == 0, local.stderr[-3000:]
    assert local.stdout.startswith("Skipped rclpy does not import"), local.stdout
    assert "pip install -e '.[ros]'" in local.stdout

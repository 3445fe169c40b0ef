"""The deploy side (policies, sim, replay, ros_nodes) must import without torch: a robot computer has none."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_deploy_packages_import_with_torch_blocked() -> None:
    script = textwrap.dedent(
        """
        import importlib, pkgutil, sys

        class BlockTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked on the deploy side")
                return None

        sys.meta_path.insert(0, BlockTorch())
        imported = []
        for package in ("trot.policies", "trot.sim", "trot.replay", "trot.ros_nodes"):
            pkg = importlib.import_module(package)
            imported.append(package)
            for info in pkgutil.walk_packages(pkg.__path__, package + "."):
                importlib.import_module(info.name)
                imported.append(info.name)
        assert "torch" not in sys.modules
        print(" ".join(imported))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "trot.policies.observation" in result.stdout and "trot.policies.contract" in result.stdout


def test_blocking_works() -> None:
    """The blocker itself must bite, or the test above proves nothing."""
    script = (
        "import sys\n"
        "class B:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch': raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, B())\n"
        "import torch\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "blocked" in result.stderr

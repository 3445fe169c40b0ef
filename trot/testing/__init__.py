"""The harness that tests and benches share: real node processes, a probe node, fault scenarios.

Imported by tests/ and bench/ only (the layers contract keeps the package itself from importing
it). It runs from a source checkout: node processes start with the checkout as their working
directory, and the scenarios use the shipped Go2 policy.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The source checkout (trot/testing/ is a real folder inside trot/)."""
POLICY = ROOT / "policies" / "go2_flat"
"""The shipped Go2 flat-ground policy: the artifact the harness runs its nodes with."""

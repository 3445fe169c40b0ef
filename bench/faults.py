"""Fault and bad-input suite: what the stack survives, and what it never does.

Runs the scenarios of trot.testing.faults (real node processes over real ROS 2, real bags, real
training runs killed with SIGKILL) with the full counts and prints the reliability table; the exit
status is 0 when every row met its target, else 1. The tests (tests/bench/test_faults.py) run the
same scenarios.

    python bench/faults.py [--fuzz-messages 10000]
        [--only fuzz,garbage,dropouts,driver,sources,recorder,training,artifacts]
"""

from __future__ import annotations

import argparse
import os
import sys

from trot.testing.faults.suite import SCENARIOS, run
from trot.testing.faults.table import print_table
from trot.testing.processes import start_domains_at


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fuzz-messages", type=int, default=10_000)
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}")
    a = parser.parse_args()
    # ROS domains of their own, clear of the ones the tests use (from 110), so both can run at once
    start_domains_at(int(os.environ.get("TROT_FAULTS_DOMAIN_BASE", "150")))
    rows = run(tuple(s for s in a.only.split(",") if s), a.fuzz_messages)
    print_table(rows)
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

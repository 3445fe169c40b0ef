"""`trot replay` speed on a Go2 episode: resim vs real time (target >= 50x), render wall time
(video at 30 fps + plots, target <= 30 s for 20 s). Records the episode with `trot deploy --sim`
unless a bag is given.

    python bench/replay_speed.py [BAG]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from trot.replay.episode import load_episode
from trot.replay.report import render_cmd
from trot.replay.resim import resim


def main() -> None:
    if len(sys.argv) > 1:
        bag = Path(sys.argv[1])
    else:
        from trot.ros_nodes.deploy import DeployConfig, deploy

        summary = deploy(DeployConfig(sim=True, out=Path(tempfile.mkdtemp()) / "deploy", replay=False))
        bag = Path(summary["bag"])
    ep = load_episode(bag)
    seconds = ep.joint_states.t[-1] - ep.joint_states.t[0]
    r = resim(ep)
    print(f"episode {seconds:.1f} s ({bag.name})")
    print(f"resim: {r.seconds_simulated:.1f} s simulated in {r.wall_s:.3f} s = "
          f"{r.seconds_simulated / r.wall_s:.0f}x real time (target >= 50x); joint RMS divergence "
          f"{r.joint_rms.mean():.4f} rad")  # fmt: skip
    t0 = time.perf_counter()
    render_cmd(bag, Path(tempfile.mkdtemp()) / "render")
    wall = time.perf_counter() - t0
    print(
        f"render (video 30 fps + plots + report): {wall:.1f} s for {seconds:.1f} s, "
        f"{wall * 20.0 / seconds:.1f} s per 20 s of episode (target <= 30 s)"
    )


if __name__ == "__main__":
    main()

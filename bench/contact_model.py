"""Which part of the robot MJCF's own contact model makes a policy fall: one factor at a time.

A policy artifact runs the card's random-command episodes (a new command from its ranges every 4 s,
a fifth of them stand) with a 2 kg payload and the CoM moved 3 cm per axis, on trot's training model,
on the MJCF's own model (``sim.contacts: mjcf``), and on each with one option changed: the friction
cone and ``impratio``, the solver iterations, the integrator. It prints the share of episodes without
a fall, the forward tracking error and the wall-clock seconds per variant (their physics cost).

    python bench/contact_model.py policies/go2_flat [--episodes 64] [--variants "trot,mjcf / implicitfast"]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import mujoco

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # (a checkout)

import trot.training.tasks.velocity.env as env_module  # noqa: E402
from trot.policies.runtime import PolicyRuntime  # noqa: E402
from trot.sim.randomization import Range  # noqa: E402
from trot.sim.robot import load_robot  # noqa: E402
from trot.sim.world import with_mjcf_contacts  # noqa: E402
from trot.training.artifact_eval import eval_env_config  # noqa: E402
from trot.training.evaluate import evaluate_policy  # noqa: E402

ELLIPTIC, PYRAMIDAL = mujoco.mjtCone.mjCONE_ELLIPTIC, mujoco.mjtCone.mjCONE_PYRAMIDAL
EULER, IMPLICITFAST = mujoco.mjtIntegrator.mjINT_EULER, mujoco.mjtIntegrator.mjINT_IMPLICITFAST
# name: (which model, its physics step, option overrides on the compiled model)
VARIANTS: dict[str, tuple[str, float | None, dict]] = {
    "trot": ("trot", None, {}),
    "trot / elliptic / impratio 100": ("trot", None, {"cone": ELLIPTIC, "impratio": 100.0}),
    "trot / elliptic / impratio 100 / 10 iterations": ("trot", None, {"cone": ELLIPTIC, "impratio": 100.0,
                                                                    "iterations": 10, "ls_iterations": 20}),
    "trot / elliptic / impratio 100 / 30 iterations": ("trot", None, {"cone": ELLIPTIC, "impratio": 100.0,
                                                                    "iterations": 30, "ls_iterations": 50}),
    "trot / elliptic / impratio 1": ("trot", None, {"cone": ELLIPTIC, "impratio": 1.0}),
    "trot / elliptic / impratio 10 / 10 iterations": ("trot", None, {"cone": ELLIPTIC, "impratio": 10.0,
                                                                   "iterations": 10, "ls_iterations": 20}),
    "trot / pyramidal / impratio 100": ("trot", None, {"impratio": 100.0}),
    "trot / 2 ms / Euler": ("trot", 0.002, {"integrator": EULER}),
    "mjcf": ("mjcf", None, {}),
    "mjcf / pyramidal / impratio 1": ("mjcf", None, {"cone": PYRAMIDAL, "impratio": 1.0}),
    "mjcf / implicitfast": ("mjcf", None, {"integrator": IMPLICITFAST}),
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("policy", type=Path)
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names (default: all)")
    args = parser.parse_args()
    runtime = PolicyRuntime(args.policy)
    contract = runtime.contract
    compile_model = env_module.compile_model
    print(f"{args.policy}: {args.episodes} episodes of 20 s per variant, +2 kg, CoM +3 cm, random commands every 4 s")
    for name in args.variants.split(","):
        kind, timestep, options = VARIANTS[name]
        robot = load_robot(contract.robot)
        if kind == "mjcf":
            robot = with_mjcf_contacts(robot)
        if timestep is not None:
            sim = dataclasses.replace(robot.sim, timestep=timestep, decimation=round(robot.sim.control_dt / timestep))
            robot = dataclasses.replace(robot, sim=sim)

        def compile_with(cfg, *, _options=options, **kwargs):  # options no robot config exposes
            model, index = compile_model(cfg, **kwargs)
            for key, value in _options.items():
                setattr(model.opt, key, value)
            return model, index

        env_module.compile_model = compile_with
        cfg = eval_env_config(contract, args.episodes, 20.0)
        cfg.randomization.init_joint_pos.enabled = True
        cfg.randomization.added_base_mass, cfg.randomization.com_offset = Range(2.0, 2.0), Range(0.03, 0.03)
        cfg.commands.resample_interval_s, cfg.commands.zero_probability = 4.0, 0.2
        start = time.perf_counter()
        r = evaluate_policy(cfg, runtime.act_batch, args.episodes, 20.0, randomization=True, seed=0, robot=robot)
        print(f"{name:<46} no fall {r['no_fall_share']:6.1%}  vx error {r['vx_error_mean']:.3f} m/s  "
              f"{time.perf_counter() - start:5.1f} s", flush=True)  # fmt: skip
    env_module.compile_model = compile_model


if __name__ == "__main__":
    main()

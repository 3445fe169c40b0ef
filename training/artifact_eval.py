"""Sim-to-sim evaluation of an ONNX policy artifact and its policy card.

The artifact (not the torch model) drives the robot closed loop in MuJoCo on a fixed command
schedule, under the nominal model and a perturbation suite. The simulation is built from the
robot named in the artifact's contract, and its own contract must agree with the artifact's
field by field before anything runs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trot.policies.contract import Contract
from trot.policies.runtime import PolicyRuntime
from trot.sim.randomization import Range
from trot.sim.robot import RobotConfig, load_robot
from trot.sim.world import with_mjcf_contacts
from trot.training.tasks.velocity.config import EnvConfig
from trot.training.tasks.velocity.env import LocomotionEnv

SCHEDULE: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("stand", (0.0, 0.0, 0.0)),
    ("forward", (0.8, 0.0, 0.0)),
    ("backward", (-0.6, 0.0, 0.0)),
    ("sideways", (0.0, 0.4, 0.0)),
    ("turn", (0.0, 0.0, 0.8)),
    ("stop", (0.0, 0.0, 0.0)),
)
CONTRACT_FIELDS_THAT_MUST_MATCH = (
    "joint_names", "default_joint_pos", "action_scale", "action_clip", "kp", "kd", "torque_limits",
    "control_dt", "obs_terms",
)  # fmt: skip


@dataclass(frozen=True)
class Condition:
    name: str
    description: str
    randomization: dict[str, tuple[float, float]] = field(default_factory=dict)
    timestep: float | None = None
    mjcf_contacts: bool = False
    """On the robot MJCF's own contact model (:func:`trot.sim.world.with_mjcf_contacts`)."""

    def robot(self, name: str, control_dt: float) -> RobotConfig:
        """Robot ``name``'s config with this condition's physics."""
        robot = load_robot(name)
        if self.mjcf_contacts:
            robot = with_mjcf_contacts(robot)
        if self.timestep is not None:
            sim = dataclasses.replace(robot.sim, timestep=self.timestep, decimation=round(control_dt / self.timestep))
            robot = dataclasses.replace(robot, sim=sim)
        return robot


CONDITIONS: tuple[Condition, ...] = (
    Condition("nominal", "the training model, no randomization"),
    Condition("low_friction", "ground friction 0.4", {"friction": (0.4, 0.4)}),
    Condition("high_friction", "ground friction 1.25", {"friction": (1.25, 1.25)}),
    Condition("heavy_com", "+2 kg on the base, CoM moved +3 cm per axis",
              {"added_base_mass": (2.0, 2.0), "com_offset": (0.03, 0.03)}),
    Condition("light_com", "-1 kg off the base, CoM moved -3 cm per axis",
              {"added_base_mass": (-1.0, -1.0), "com_offset": (-0.03, -0.03)}),
    Condition("latency_12ms", "+12 ms actuation latency (3 physics steps)", {"action_delay_substeps": (3, 3)}),
    Condition("latency_20ms", "+20 ms actuation latency (1 control step)", {"action_delay_steps": (1, 1)}),
    Condition("weak_motors", "motor torque x0.8", {"motor_strength": (0.8, 0.8)}),
    Condition("timestep_2ms", "physics at 2 ms instead of the training step", timestep=0.002),
    Condition("mjcf_contacts", "the robot MJCF's own contact model: its cone, impratio, solver, step and every "
              "collision geom", mjcf_contacts=True),
    Condition("mjcf_payload", "the MJCF's own contact model, +2 kg on the base, CoM moved +3 cm per axis",
              {"added_base_mass": (2.0, 2.0), "com_offset": (0.03, 0.03)}, mjcf_contacts=True),
)  # fmt: skip


@dataclass
class PolicyEvalConfig:
    """``trot eval policies/<name>``: fixed command schedule x perturbation suite -> card.md."""

    segment_s: float = 3.0
    """Seconds per schedule segment (stand, forward, backward, sideways, turn, stop)."""
    settle_s: float = 1.0
    """Tracking error is measured from this long after each command change."""
    envs_per_condition: int = 4
    """Robots per condition (initial joint poses differ slightly)."""
    seed: int = 0
    conditions: tuple[str, ...] = ()
    """Subset of conditions to run (default: all)."""
    response_s: float = 4.0
    """Seconds each command of the command-response sweep is held (0: no sweep). The schedule's
    commands are large; the sweep shows what a policy does with small ones (a dead band)."""
    robust_episodes: int = 64
    """Episodes per condition of the random-command suite (0: none)."""
    robust_episode_s: float = 20.0
    robust_command_s: float = 4.0
    """A new random command every this many seconds of those episodes."""
    robust_stand_share: float = 0.2
    """Share of those commands that are "stand" (all zero)."""


class ContractMismatch(ValueError):
    pass


def check_contract(artifact: Contract, sim: Contract) -> None:
    for name in CONTRACT_FIELDS_THAT_MUST_MATCH:
        if getattr(artifact, name) != getattr(sim, name):
            raise ContractMismatch(
                f"contract.{name}: the artifact has {getattr(artifact, name)!r}, "
                f"the {sim.robot} simulation has {getattr(sim, name)!r}"
            )


AXES = ("vx", "vy", "yaw")
"""The command's axes, in the order of the contract's command ranges below."""
UNITS = {"vx": "m/s", "vy": "m/s", "yaw": "rad/s"}
RANGE_KEYS = ("lin_vel_x", "lin_vel_y", "ang_vel_yaw")


def command_limits(contract: Contract) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest command per axis the policy was trained on."""
    return (np.array([contract.command_ranges[k][0] for k in RANGE_KEYS]),
            np.array([contract.command_ranges[k][1] for k in RANGE_KEYS]))  # fmt: skip


def schedule_commands(contract: Contract) -> list[tuple[str, np.ndarray]]:
    """The schedule, clipped into the command ranges the policy was trained on."""
    lo, hi = command_limits(contract)
    return [(name, np.clip(np.array(cmd), lo, hi)) for name, cmd in SCHEDULE]


def eval_env_config(contract: Contract, num_envs: int, episode_s: float) -> EnvConfig:
    """The nominal model: no randomization, no observation noise, commands only as set (drawn, where
    a caller lets them be, from the contract's ranges)."""
    env_cfg = EnvConfig(robot=contract.robot, num_envs=num_envs, nthread=1)
    commands = env_cfg.commands
    commands.lin_vel_x, commands.lin_vel_y, commands.ang_vel_yaw = (tuple(contract.command_ranges[k])
                                                                    for k in RANGE_KEYS)  # fmt: skip
    env_cfg.randomization.disable_all()
    env_cfg.noise.enabled = False
    env_cfg.episode_length_s = episode_s
    env_cfg.commands.resample_interval_s, env_cfg.commands.resample_spread_s = 1e9, 0.0
    return env_cfg


def open_eval_env(contract: Contract, env_cfg: EnvConfig, seed: int, robot=None) -> LocomotionEnv:
    """The environment, reset, once its contract agrees with the artifact's."""
    env = LocomotionEnv(env_cfg, seed=seed, robot=robot)
    check_contract(contract, dataclasses.replace(env.contract, command_ranges=contract.command_ranges))
    env.reset()
    return env


def achieved_velocity(env: LocomotionEnv) -> np.ndarray:
    """[num_envs, 3]: body-frame vx, vy and yaw rate, the command's axes."""
    return np.column_stack([env._linvel[:, 0], env._linvel[:, 1], env._gyro[:, 2]])


def run_condition(runtime: PolicyRuntime, cond: Condition, cfg: PolicyEvalConfig) -> dict:
    contract = runtime.contract
    robot = cond.robot(contract.robot, contract.control_dt)
    schedule = schedule_commands(contract)
    env_cfg = eval_env_config(contract, cfg.envs_per_condition, cfg.segment_s * len(schedule) + 1.0)
    env_cfg.randomization.init_joint_pos.enabled = True
    for name, (lo, hi) in cond.randomization.items():
        setattr(env_cfg.randomization, name, Range(lo, hi))
    env = open_eval_env(contract, env_cfg, cfg.seed, robot)
    seg_steps = round(cfg.segment_s / env.dt)
    settle = round(cfg.settle_s / env.dt)
    n = env.num_envs
    alive = np.ones(n, dtype=bool)
    fall_time = np.full(n, np.nan)
    trace = {"t": [], "command": [], "achieved": [], "alive": []}
    errors: dict[str, list[np.ndarray]] = {"vx": [], "vy": [], "yaw": []}
    torque, power = [], []
    for k in range(seg_steps * len(schedule)):
        if k % seg_steps == 0:
            obs = env.set_commands(schedule[k // seg_steps][1])
        command = env.commands[0].copy()
        obs, _, terminated, truncated, _ = env.step(runtime.act_batch(obs))
        fell = alive & terminated
        fall_time[fell] = (k + 1) * env.dt
        alive &= ~(terminated | truncated)
        achieved = achieved_velocity(env)
        trace["t"].append((k + 1) * env.dt)
        trace["command"].append(command)
        trace["achieved"].append(
            np.where(alive[:, None], achieved, np.nan).mean(axis=0) if alive.any() else [np.nan] * 3
        )
        trace["alive"].append(alive.mean())
        if alive.any():
            torque.append(np.abs(env._torques[alive]).mean())
            power.append(np.abs(env._torques[alive] * env._joint_vel[alive]).sum(axis=1).mean())
            if k % seg_steps >= settle:
                for i, key in enumerate(AXES):
                    errors[key].append(np.abs(achieved[alive, i] - command[i]))
    env.close()

    def mean(values: list[np.ndarray]) -> float:
        return float(np.concatenate(values).mean()) if values else float("nan")

    return {
        "condition": cond.name,
        "description": cond.description,
        "vx_error": mean(errors["vx"]),
        "vy_error": mean(errors["vy"]),
        "yaw_error": mean(errors["yaw"]),
        "fall_rate": float((~np.isnan(fall_time)).mean()),
        "mean_abs_torque": float(np.mean(torque)) if torque else float("nan"),
        "mean_power_w": float(np.mean(power)) if power else float("nan"),
        "trace": {k: np.asarray(v).tolist() for k, v in trace.items()},
    }


ROBUSTNESS = ("nominal", "mjcf_contacts", "mjcf_payload")
"""The conditions of the random-command suite: trot's training model, and the robot as its MJCF ships."""


def robustness(path: Path, cfg: PolicyEvalConfig | None = None) -> list[dict]:
    """Random commands: per condition of :data:`ROBUSTNESS`, ``robust_episodes`` episodes of
    ``robust_episode_s``, a new command from the contract's ranges every ``robust_command_s`` (a
    ``robust_stand_share`` of them stand), no randomization beyond the condition's. The share of
    episodes without a fall and the tracking error 1 s after each change. A policy that tips over
    when the command changes, or on a stiffer contact model, shows here; the schedule's 4 robots
    per condition are too few to see a 5 % fall rate."""
    from trot.training.evaluate import evaluate_policy

    cfg = cfg or PolicyEvalConfig()
    runtime = PolicyRuntime(path)
    contract = runtime.contract
    rows = []
    for cond in (c for c in CONDITIONS if c.name in ROBUSTNESS):
        env_cfg = eval_env_config(contract, cfg.robust_episodes, cfg.robust_episode_s)
        env_cfg.randomization.init_joint_pos.enabled = True
        for name, (lo, hi) in cond.randomization.items():
            setattr(env_cfg.randomization, name, Range(lo, hi))
        env_cfg.commands.resample_interval_s = cfg.robust_command_s  # (no spread: eval_env_config's)
        env_cfg.commands.zero_probability = cfg.robust_stand_share
        robot = cond.robot(contract.robot, contract.control_dt)
        result = evaluate_policy(env_cfg, runtime.act_batch, cfg.robust_episodes, cfg.robust_episode_s,
                                 randomization=True, seed=cfg.seed, robot=robot)  # fmt: skip
        rows.append({"condition": cond.name, "description": cond.description, **result})
    return rows


RESPONSE_MAGNITUDES = (0.1, 0.2, 0.3, 0.5, 0.8)
"""Commanded speeds of the command-response sweep, both signs, per axis (m/s or rad/s), clipped into
the policy's command ranges."""


def command_response(path: Path, cfg: PolicyEvalConfig | None = None) -> list[dict]:
    """Achieved against commanded velocity, one axis at a time (the others zero), nominal model: one
    robot per command, mean over the last half of ``cfg.response_s``. The schedule cannot show a dead
    band: a policy that ignores commands under 0.3 m/s still tracks its 0.8 m/s forward."""
    cfg = cfg or PolicyEvalConfig()
    runtime = PolicyRuntime(path)
    contract = runtime.contract
    commands, rows = [], []
    lo, hi = command_limits(contract)
    for axis, name in enumerate(AXES):
        values = {float(np.clip(sign * m, lo[axis], hi[axis])) for m in RESPONSE_MAGNITUDES for sign in (-1.0, 1.0)}
        for value in sorted(values - {0.0}):
            command = np.zeros(3)
            command[axis] = value
            commands.append(command)
            rows.append({"axis": name, "command": value})
    env = open_eval_env(contract, eval_env_config(contract, len(commands), cfg.response_s + 1.0), cfg.seed)
    obs = env.set_commands(np.stack(commands))
    steps = max(2, round(cfg.response_s / env.dt))
    achieved, alive = [], np.ones(env.num_envs, dtype=bool)
    for k in range(steps):
        obs, _, terminated, truncated, _ = env.step(runtime.act_batch(obs))
        alive &= ~(terminated | truncated)
        if k >= steps // 2:
            achieved.append(achieved_velocity(env))
    env.close()
    mean = np.mean(achieved, axis=0)
    for i, row in enumerate(rows):
        axis = AXES.index(row["axis"])
        row["achieved"] = float(mean[i, axis]) if alive[i] else float("nan")
        row["fell"] = bool(not alive[i])
    return rows


def dead_band(rows: list[dict], axis: str, share: float = 0.5) -> float:
    """The largest commanded speed on ``axis`` (either sign) that the robot follows by less than
    ``share`` of it: below it a command barely moves the robot; 0 when it follows them all."""
    missed = [
        abs(r["command"])
        for r in rows
        if r["axis"] == axis and not r["achieved"] * r["command"] >= share * r["command"] ** 2
    ]
    return max(missed, default=0.0)


def evaluate_artifact(path: Path, cfg: PolicyEvalConfig | None = None) -> list[dict]:
    cfg = cfg or PolicyEvalConfig()
    runtime = PolicyRuntime(path)
    wanted = set(cfg.conditions) if cfg.conditions else None
    unknown = (wanted or set()) - {c.name for c in CONDITIONS}
    if unknown:
        raise ValueError(f"conditions: unknown {sorted(unknown)} (known: {[c.name for c in CONDITIONS]})")
    return [run_condition(runtime, c, cfg) for c in CONDITIONS if wanted is None or c.name in wanted]


def write_card(
    path: Path,
    results: list[dict],
    cfg: PolicyEvalConfig,
    training: dict | None = None,
    response: list[dict] | None = None,
    robust: list[dict] | None = None,
) -> Path:
    """card.md + PNG plots beside the artifact (and the command-response sweep and the random-command
    suite, when given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runtime_contract = PolicyRuntime(path).contract
    names = [r["condition"] for r in results]
    (path / "eval.json").write_text(
        json.dumps([{k: v for k, v in r.items() if k != "trace"} for r in results], indent=2)
    )

    nominal = results[0]
    t = np.array(nominal["trace"]["t"])
    cmd, got = np.array(nominal["trace"]["command"]), np.array(nominal["trace"]["achieved"])
    fig, axes = plt.subplots(3, 1, figsize=(8, 6), sharex=True)
    for i, (ax, label) in enumerate(zip(axes, ("vx [m/s]", "vy [m/s]", "yaw rate [rad/s]"), strict=True)):
        ax.plot(t, cmd[:, i], "k--", label="commanded")
        ax.plot(t, got[:, i], label="achieved (mean over robots)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("time [s]")
    fig.suptitle(f"{runtime_contract.robot}: {nominal['condition']} - commanded vs achieved")
    fig.tight_layout()
    fig.savefig(path / "tracking_nominal.png", dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    x = np.arange(len(names))
    axes[0].bar(x - 0.25, [r["vx_error"] for r in results], 0.25, label="vx")
    axes[0].bar(x, [r["vy_error"] for r in results], 0.25, label="vy")
    axes[0].bar(x + 0.25, [r["yaw_error"] for r in results], 0.25, label="yaw")
    axes[0].set_title("tracking error (after settling)")
    axes[0].legend(fontsize=8)
    axes[1].bar(x, [r["fall_rate"] for r in results], color="tab:red")
    axes[1].set_title("fall rate")
    axes[1].set_ylim(0, 1)
    axes[2].bar(x, [r["mean_power_w"] for r in results], color="tab:green")
    axes[2].set_title("mean mechanical power [W]")
    for ax in axes:
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path / "conditions.png", dpi=100)
    plt.close(fig)

    if response:
        (path / "response.json").write_text(json.dumps(response, indent=2))
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
        for ax, (axis, unit) in zip(axes, UNITS.items(), strict=True):
            rows = [r for r in response if r["axis"] == axis]
            commanded = np.array([r["command"] for r in rows])
            ax.plot(commanded, commanded, "k--", lw=1, label="ideal")
            ax.plot(commanded, [r["achieved"] for r in rows], "o-", label="achieved")
            ax.set_xlabel(f"commanded {axis} [{unit}]")
            ax.set_ylabel(f"achieved {axis} [{unit}]")
            ax.set_title(f"{axis}: dead band {dead_band(response, axis):g} {unit}")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path / "command_response.png", dpi=100)
        plt.close(fig)

    prov = runtime_contract.provenance
    lines = [
        f"# Policy card: `{path.name}`",
        "",
        f"Robot **{runtime_contract.robot}**, {runtime_contract.num_joints} joints, policy at "
        f"{1 / runtime_contract.control_dt:.0f} Hz, observation of {runtime_contract.num_obs} values "
        f"({', '.join(t.name for t in runtime_contract.obs_terms)}). Contract in `policy.yaml` (and inside "
        "`policy.onnx`).",
        "",
        "## Provenance",
        "",
        "| field | value |",
        "| --- | --- |",
    ]
    for key, value in {**prov, **(training or {})}.items():
        lines.append(f"| {key} | {value} |")
    lines += [
        "",
        "## Sim-to-sim evaluation (ONNX Runtime in MuJoCo)",
        "",
        f"Command schedule, {cfg.segment_s:g} s each: "
        + ", ".join(f"{n} {tuple(round(float(v), 2) for v in c)}" for n, c in schedule_commands(runtime_contract))
        + f". {cfg.envs_per_condition} robots per condition; errors measured {cfg.settle_s:g} s after each change.",
        "",
        "| condition | what changes | vx err [m/s] | vy err [m/s] | yaw err [rad/s] | falls | mean abs torque [Nm] "
        "| power [W] |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['condition']} | {r['description']} | {r['vx_error']:.3f} | {r['vy_error']:.3f} | "
            f"{r['yaw_error']:.3f} | {r['fall_rate']:.0%} | {r['mean_abs_torque']:.2f} | {r['mean_power_w']:.1f} |"
        )
    lines += ["", "![tracking](tracking_nominal.png)", "", "![conditions](conditions.png)", ""]
    if response:
        lines += [
            "## Command response (one axis at a time, nominal model)",
            "",
            f"One robot per command, held {cfg.response_s:g} s from standing; achieved is the mean over the last "
            "half. Dead band: the largest command the robot follows by less than half.",
            "",
            "| axis | dead band | commanded -> achieved |",
            "| --- | --- | --- |",
        ]
        for axis, unit in UNITS.items():
            pairs = ", ".join(f"{r['command']:+.2f} -> {r['achieved']:+.2f}" + (" (fell)" if r["fell"] else "")
                              for r in response if r["axis"] == axis)  # fmt: skip
            lines.append(f"| {axis} [{unit}] | {dead_band(response, axis):g} | {pairs} |")
        lines += ["", "![command response](command_response.png)", ""]
    if robust:
        (path / "robustness.json").write_text(json.dumps(robust, indent=2))
        lines += [
            "## Random commands (ONNX Runtime in MuJoCo)",
            "",
            f"{cfg.robust_episodes} episodes of {cfg.robust_episode_s:g} s per condition; a new command from the "
            f"policy's ranges every {cfg.robust_command_s:g} s, {cfg.robust_stand_share:.0%} of them stand; no "
            "randomization beyond the condition's; errors measured 1 s after each change.",
            "",
            "| condition | what changes | episodes without a fall | vx err [m/s] | vy err [m/s] | yaw err [rad/s] |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in robust:
            errors = " | ".join(f"{r[f'{axis}_error_mean']:.3f}" for axis in AXES)
            lines.append(f"| {r['condition']} | {r['description']} | {r['no_fall_share']:.1%} | {errors} |")
        lines.append("")
    if (path / "training_eval.json").exists():
        ev = json.loads((path / "training_eval.json").read_text())
        lines += [
            "## Evaluation on the training distribution (`trot eval RUN_DIR`, torch checkpoint)",
            "",
            f"{ev['episodes']} episodes of 20 s, commands drawn from the training ranges (resampled every 5 s), "
            "training domain randomization and observation noise on; errors measured 1 s after each command.",
            "",
            "| forward vx error [m/s] | lateral vy error [m/s] | yaw error [rad/s] | episodes without a fall |",
            "| --- | --- | --- | --- |",
            f"| {ev['vx_error_mean']:.3f} | {ev['vy_error_mean']:.3f} | {ev['yaw_error_mean']:.3f} | "
            f"{ev['no_fall_share']:.1%} |",
            "",
        ]
    if (path / "training_curve.png").exists():
        lines += ["## Training curve", "", "![training curve](training_curve.png)", ""]
    card = path / "card.md"
    card.write_text("\n".join(lines))
    return card

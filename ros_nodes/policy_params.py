"""The policy node's parameters (besides the safety settings, SafetyConfig): declared once here,
each with its type, default, description and check."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from trot.policies.settings import SafetyConfig, above, at_least, unsound
from trot.ros_nodes.params import doc

if TYPE_CHECKING:
    from trot.policies.runtime import PolicyRuntime

START_MODES = ("passive", "auto", "manual")
CONTROL_TRIGGERS = ("timer", "joint_states")


@dataclass
class PolicyNodeParams:
    policy_path: str = field(
        default="", metadata=doc("policy artifact folder, its policy.onnx, or a shipped name (go2_flat)")
    )
    control_rate: float = field(default=0.0, metadata=doc("Hz; 0 = the artifact's control period"))
    start_mode: str = field(
        default="passive",
        metadata=doc(
            "passive: configure + activate, then wait in PASSIVE for ~/start; auto: also stand up and run; "
            "manual: wait for lifecycle transitions (a lifecycle manager)"
        ),
    )
    joint_states_topic: str = field(default="joint_states", metadata=doc("in: sensor_msgs/JointState, any joint order"))
    imu_topic: str = field(default="imu", metadata=doc("in: sensor_msgs/Imu"))
    cmd_vel_topic: str = field(default="cmd_vel", metadata=doc("in: geometry_msgs/Twist, body frame"))
    cmd_vel_sources: list[str] = field(
        default_factory=list,
        metadata=doc(
            "fully qualified node names (/ns/teleop) allowed to publish on cmd_vel together (teleop beside a "
            "planner); empty = one source only, as joint states and IMU always: a second publisher refuses "
            "~/start and damps a running robot"
        ),
    )
    joint_commands_topic: str = field(
        default="joint_commands", metadata=doc("out: sensor_msgs/JointState targets; no positions = damping")
    )
    forward_command_topic: str = field(default="", metadata=doc("Float64MultiArray topic; empty = off"))
    forward_joint_order: list[str] = field(
        default_factory=list, metadata=doc("the forward_command_controller's joints: each policy joint once")
    )
    joint_state_timeout_s: float = field(default=5.0, metadata=doc("configure waits this long for joint names"))
    realtime_priority: int = field(
        default=0,
        metadata=doc(
            "SCHED_FIFO priority of the control thread (1-99; the middleware's receive threads get one below; "
            "needs CAP_SYS_NICE or an rtprio limit); 0 = off"
        ),
    )
    control_trigger: str = field(
        default="timer",
        metadata=doc(
            "timer: tick on absolute deadlines; joint_states: tick as each fresh joint state arrives (lowest "
            "latency when the driver publishes at the control rate; the timer still ticks if they stop)"
        ),
    )

    prewarm_lead_s: float = field(
        default=0.002,
        metadata=doc(
            "this long before each tick (timer: its deadline; joint_states: when the next samples are "
            "expected), run the policy once on the current inputs, result thrown away, so that its weights "
            "and code are back in the CPU caches when the tick comes (a process that slept finds them "
            "cold, and a cold tick is slower); 0 = off; also off with "
            "use_sim_time and when not below half a control period"
        ),
    )
    busy_wait_s: float = field(
        default=0.0,
        metadata=doc(
            "the control thread busy-waits instead of sleeping this long before each tick (timer: its "
            "deadline) or, with control_trigger:=joint_states, this long either side of when the next "
            "samples are expected: for a host whose idle CPUs wake late (a fraction of a millisecond at "
            "the tail), e.g. 0.0003; costs this much CPU per tick (twice with joint_states); 0 = off (on a "
            "multi-core computer it showed more 500 Hz overruns, not fewer); also off with use_sim_time"
        ),
    )

    def problems(self) -> list[str]:
        """Each unsound number, named with its value and what it must be; [] when all are sound."""
        return unsound(self, {
            "control_rate": at_least(0, "(0 = the artifact's)"), "joint_state_timeout_s": above(0),
            "realtime_priority": ((lambda v: 0 <= v <= 99), "0 (off) to 99"),
            "prewarm_lead_s": at_least(0, "(0 = off)"), "busy_wait_s": at_least(0, "(0 = off)"),
        })  # fmt: skip


def configure_problem(params: PolicyNodeParams, safety: SafetyConfig, unknown: Sequence[str]) -> str | None:
    """Why configure must fail on the parameters alone (the first reason found: unknown names, a
    mode that is none of the choices, then every unsound number), or None."""
    if unknown:
        return f"unknown parameters {unknown}"
    if params.start_mode not in START_MODES:
        return f"start_mode {params.start_mode!r} is not passive, auto or manual"
    if params.control_trigger not in CONTROL_TRIGGERS:
        return f"control_trigger {params.control_trigger!r} is not 'timer' or 'joint_states'"
    if bad := [name for name in params.cmd_vel_sources if not name.startswith("/") or name.endswith("/")]:
        return f"cmd_vel_sources {bad}: each must be a fully qualified node name (/teleop, /ns/teleop)"
    if problems := params.problems() + safety.problems():
        return "; ".join(problems)
    return None


def parameters_record(
    params: PolicyNodeParams, safety: SafetyConfig, sim_time: bool, period: float, runtime: PolicyRuntime
) -> str:
    """What a configured node runs with, as JSON (latched on ~/parameters): recorded with each
    episode, so that a bag says which safety limits and timing served it, not only which artifact."""
    return json.dumps({
        "node": dataclasses.asdict(params), "safety": dataclasses.asdict(safety), "use_sim_time": sim_time,
        "control_period_s": period, "policy_sha256": runtime.onnx_sha256,
        "robot": runtime.contract.robot, "joint_names": list(runtime.joint_names),
        # the gains the targets are meant for (contract order): a driver bridge can take them from here
        # rather than keep a second copy, and the bag records what the robot should have run
        "kp": list(runtime.contract.kp), "kd": list(runtime.contract.kd),
        "torque_limits": list(runtime.contract.torque_limits)})  # fmt: skip


def joint_order_problem(order: Sequence[str], joints: Sequence[str]) -> str | None:
    """Why ``order`` (a ros2_control controller's joint list) is not each of ``joints`` exactly
    once, naming the unknown, missing and repeated joints; None when it is."""
    unknown = [n for n in order if n not in joints]
    missing = [n for n in joints if n not in order]
    repeated = sorted({n for n in order if order.count(n) > 1})
    parts = [f"{what} {names}" for what, names in
             (("names joints the policy does not have:", unknown), ("misses the policy's joints", missing),
              ("repeats", repeated)) if names]  # fmt: skip
    return "; ".join(parts) if parts else None

"""The parameters of trot_unitree_bridge and of the simulated Go2 board (trot_unitree_board): declared
once here, each with its type, default, description and check (docs/ros/parameters.md is generated
from them), in a module without Unitree's SDK (the docs are generated where it is not installed)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trot.policies.settings import above, at_least, unsound
from trot.ros_nodes.params import doc
from trot.sim.world import DAMPING_KD


@dataclass
class BridgeParams:
    policy_path: str = field(default="", metadata=doc("the policy artifact: its contract's joints and Kp/Kd"))
    robot: str = field(
        default="", metadata=doc("shipped robot name or robot YAML path with a 'unitree' section ('': the policy's)")
    )
    network_interface: str = field(
        default="", metadata=doc("the interface wired to the robot (e.g. enp2s0; lo for the simulated board)")
    )
    dds_domain: int = field(default=0, metadata=doc("CycloneDDS domain of rt/lowstate and rt/lowcmd (a Go2: 0)"))
    rate: float = field(default=500.0, metadata=doc("Hz of rt/lowcmd"))
    command_timeout_s: float = field(
        default=0.1, metadata=doc("no joint command for this long -> damping until the next one")
    )
    damping_kd: float = field(default=DAMPING_KD, metadata=doc("N m s/rad of damping (kp 0)"))
    release_sport_mode: bool = field(
        default=True,
        metadata=doc(
            "ask the robot's motion switcher to release its built-in controller before commanding (a standing "
            "Go2 can drop: lie it down or hang it first); false: refuse to command while one holds the robot"
        ),
    )
    mode_check_period_s: float = field(
        default=1.0, metadata=doc("s between two asks of the motion switcher which controller holds the robot")
    )
    joint_range_margin: float = field(
        default=0.2, metadata=doc("rad a joint may read beyond its contract range before the bridge damps")
    )
    remote: bool = field(
        default=True,
        metadata=doc(
            "decode the wireless remote: sticks out of their dead zone -> cmd_vel (50 Hz), buttons -> the policy "
            "node's ~/start, ~/stop, ~/estop"
        ),
    )
    remote_dead_zone: float = field(default=0.1, metadata=doc("stick deflection (of 1) read as centred"))
    policy_node: str = field(default="trot_policy", metadata=doc("the policy node whose services the remote calls"))
    joint_states_topic: str = field(default="joint_states", metadata=doc("out: sensor_msgs/JointState"))
    imu_topic: str = field(default="imu", metadata=doc("out: sensor_msgs/Imu"))
    cmd_vel_topic: str = field(default="cmd_vel", metadata=doc("out: geometry_msgs/Twist from the remote's sticks"))
    joint_commands_topic: str = field(default="joint_commands", metadata=doc("in: sensor_msgs/JointState targets"))

    def problems(self) -> list[str]:
        found = unsound(self, {"rate": above(0), "command_timeout_s": above(0), "damping_kd": at_least(0),
                               "joint_range_margin": at_least(0), "mode_check_period_s": above(0),
                               "remote_dead_zone": ((lambda v: 0 <= v < 1), "0 to below 1")})  # fmt: skip
        if not self.policy_path:
            found.append("policy_path is empty: the bridge takes the joints and gains from the policy's contract")
        if not self.network_interface:
            found.append("network_interface is empty: name the interface wired to the robot (lo: the simulated one)")
        return found


@dataclass
class BoardParams:
    robot: str = field(default="go2", metadata=doc("shipped robot name or robot YAML path (with a 'unitree' section)"))
    network_interface: str = field(default="lo", metadata=doc("the interface CycloneDDS serves rt/* on"))
    dds_domain: int = field(default=1, metadata=doc("CycloneDDS domain of rt/lowstate and rt/lowcmd"))
    rate: float = field(default=500.0, metadata=doc("Hz of physics steps and rt/lowstate messages"))
    command_timeout_s: float = field(
        default=0.1, metadata=doc("no valid rt/lowcmd for this long (or none yet) -> every motor damped")
    )
    damping_kd: float = field(default=DAMPING_KD, metadata=doc("N m s/rad of the board's own damping"))
    sport_mode: str = field(
        default="normal",
        metadata=doc(
            "the built-in controller holding the robot at start, as a Go2 boots ('' = released): it keeps "
            "the standing pose and rt/lowcmd is ignored until the motion switcher releases it"
        ),
    )
    real_time_factor: float = field(default=1.0, metadata=doc("1 = real time; 0 = as fast as possible"))
    odom_rate: float = field(default=100.0, metadata=doc("Hz of odom (the base's true state, on ROS)"))
    odom_topic: str = field(default="odom", metadata=doc("out: nav_msgs/Odometry"))

    def problems(self) -> list[str]:
        return unsound(self, {"rate": above(0), "odom_rate": above(0), "command_timeout_s": above(0),
                              "damping_kd": at_least(0), "real_time_factor": at_least(0)})  # fmt: skip

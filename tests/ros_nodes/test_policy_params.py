"""trot.ros_nodes.policy_params: the policy node's parameters and their checks, without a node."""

from trot.policies.settings import SafetyConfig
from trot.ros_nodes.policy_params import PolicyNodeParams, configure_problem, joint_order_problem


def test_a_controller_joint_order_must_name_each_policy_joint_once() -> None:
    joints = ["a", "b", "c"]
    assert joint_order_problem(["c", "a", "b"], joints) is None
    assert joint_order_problem([], joints) == "misses the policy's joints ['a', 'b', 'c']"
    problem = joint_order_problem(["a", "x", "a"], joints)
    assert (
        problem == "names joints the policy does not have: ['x']; misses the policy's joints ['b', 'c']; repeats ['a']"
    )


def test_configure_names_the_first_parameter_problem_and_passes_sound_ones() -> None:
    sound, safety = PolicyNodeParams(), SafetyConfig()
    assert configure_problem(sound, safety, []) is None
    assert configure_problem(sound, safety, ["speling"]) == "unknown parameters ['speling']"
    assert configure_problem(PolicyNodeParams(start_mode="Auto"), safety, []) == (
        "start_mode 'Auto' is not passive, auto or manual"
    )
    assert configure_problem(PolicyNodeParams(control_trigger="imu"), safety, []) == (
        "control_trigger 'imu' is not 'timer' or 'joint_states'"
    )
    problem = configure_problem(PolicyNodeParams(busy_wait_s=-0.001), SafetyConfig(joint_limit_margin=float("nan")), [])
    assert problem == ("busy_wait_s is -0.001: must be a finite number >= 0 (0 = off); "
                       "joint_limit_margin is nan: must be a finite number >= 0 (rad)")  # fmt: skip


def test_trot_loads_its_fast_dds_profile_unless_the_user_chose_one_or_another_rmw() -> None:
    from trot.ros_nodes.params import DDS_PROFILE, use_trot_dds_profile

    assert DDS_PROFILE.is_file() and "<heartbeatPeriod>" in DDS_PROFILE.read_text()
    env: dict[str, str] = {}
    assert use_trot_dds_profile(env) and env["FASTRTPS_DEFAULT_PROFILES_FILE"] == str(DDS_PROFILE)
    for theirs in ({"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"}, {"FASTDDS_DEFAULT_PROFILES_FILE": "/x.xml"},
                   {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}):  # fmt: skip
        env = dict(theirs)
        assert not use_trot_dds_profile(env) and env == theirs


def test_cmd_vel_sources_must_be_fully_qualified_node_names() -> None:
    safety = SafetyConfig()
    assert configure_problem(PolicyNodeParams(cmd_vel_sources=["/teleop", "/ns/nav"]), safety, []) is None
    assert configure_problem(PolicyNodeParams(cmd_vel_sources=["teleop", "/ns/"]), safety, []) == (
        "cmd_vel_sources ['teleop', '/ns/']: each must be a fully qualified node name (/teleop, /ns/teleop)"
    )

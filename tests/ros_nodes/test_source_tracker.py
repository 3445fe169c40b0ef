"""trot.ros_nodes.sources.SourceTracker: one source per input, from sequence numbers and the graph
(no ROS: the numbers and publisher lists a node would feed it)."""

from trot.ros_nodes.sources import SourceTracker, sources_problem


def feed(tracker: SourceTracker, sequences, t0: float = 0.0, dt: float = 0.004) -> list[bool]:
    return [tracker.message(seq, t0 + i * dt) for i, seq in enumerate(sequences)]


def test_one_publisher_is_one_source_also_when_it_restarts_or_gives_no_numbers() -> None:
    t = SourceTracker("/joint_states")
    t.graph(["/robot"])
    assert not any(feed(t, range(1, 100)))
    assert not any(feed(t, [1, 2, 3, 0, None, 4], t0=1.0))  # restarted (from 1 again); 0/None: unknown
    assert t.count() == 1 and t.problem() is None


def test_a_second_publisher_interleaving_is_caught_on_its_first_messages_whichever_numbers_it_has() -> None:
    for second in (range(1, 51), range(90_000, 90_050), range(4_998, 5_048)):
        t = SourceTracker("/joint_states")
        t.graph(["/robot"])
        feed(t, range(4_900, 5_000))  # the robot's stream
        mixed = [n for pair in zip(range(5_000, 5_050), second, strict=True) for n in pair]
        seen = feed(t, mixed, t0=0.4)
        assert seen.index(True) <= 3, (second, seen[:6])
        assert all(seen[3:])
        assert t.count() == 2
        assert t.problem() == ("/joint_states has more than one publisher: /robot and another the graph does not "
                               "show (interleaved sequence numbers)")  # fmt: skip


def test_the_graph_names_every_publisher_and_a_silent_one_counts_too() -> None:
    t = SourceTracker("/imu")
    t.graph(["/robot", "/intruder"])  # (the second has sent nothing)
    assert t.count() == 2
    assert t.problem() == "/imu has 2 publishers: /intruder, /robot"
    assert sources_problem([t, SourceTracker("/joint_states")]) == t.problem()


def test_a_second_source_gone_quiet_for_quiet_s_is_gone() -> None:
    t = SourceTracker("/joint_states", quiet_s=0.5)
    feed(t, [n for pair in zip(range(100, 120), range(1, 21), strict=True) for n in pair])
    assert t.interleaved
    feed(t, range(120, 300), t0=0.2)  # the robot alone from here on
    assert not t.interleaved and t.count() == 1 and t.problem() is None
    assert not any(feed(t, [1, 2, 3], t0=1.0))  # then a restart of the robot's driver: no fault


def test_accepted_sources_may_publish_together_but_no_other() -> None:
    t = SourceTracker("/cmd_vel", accepted=frozenset({"/teleop_joy", "/nav"}))
    feed(t, [n for pair in zip(range(100, 140), range(1, 41), strict=True) for n in pair])
    t.graph(["/nav", "/teleop_joy"])
    assert t.problem() is None
    t.graph(["/nav", "/teleop_joy", "/stray"])
    assert t.problem() == "/cmd_vel has 3 publishers: /nav, /stray, /teleop_joy (/stray not in the accepted sources)"
    t.graph(["/stray"])  # one source, accepted or not: the default rule
    t.expire(10.0)
    assert t.problem() is None


def test_with_accepted_sources_a_publisher_named_only_by_gid_is_waited_for_then_judged() -> None:
    """A new process's endpoint is discovered before its node name: with accepted sources it is
    judged once named, or after name_grace_s as not accepted; without, two publishers are two."""
    t = SourceTracker("/cmd_vel", accepted=frozenset({"/probe", "/bridge"}), name_grace_s=2.0)
    t.graph(["/bridge", "gid:0a0b"], now=10.0)
    assert t.problem(now=11.9) is None
    assert t.problem(now=12.0) == "/cmd_vel has 2 publishers: /bridge, gid:0a0b (gid:0a0b not in the accepted sources)"
    t.graph(["/bridge", "/probe"], now=12.1)  # named: accepted
    assert t.problem(now=20.0) is None
    t.graph(["/bridge", "/stray"], now=20.0)  # named: not accepted, at once
    assert "/stray not in the accepted sources" in t.problem(now=20.0)
    plain = SourceTracker("/joint_states")
    plain.graph(["/robot", "gid:0a0b"], now=0.0)
    assert plain.problem(now=0.0) == "/joint_states has 2 publishers: /robot, gid:0a0b"

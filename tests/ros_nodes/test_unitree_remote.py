"""The Go2's wireless remote bytes, without DDS: Unitree's layout, the dead zone, the policy's command
ranges, and button combinations firing once per press."""

import struct

import pytest

from trot.ros_nodes import unitree_remote as remote

RANGES = {"lin_vel_x": (-1.0, 1.0), "lin_vel_y": (-0.5, 0.5), "ang_vel_yaw": (-1.0, 1.0)}


def test_the_40_bytes_are_unitrees_layout() -> None:
    raw = remote.encode(["B", "L1"], lx=0.25, ly=-0.5, rx=0.75, ry=1.0)
    assert len(raw) == 40 == remote.SIZE
    bits, lx, rx, ry, l2, ly = struct.unpack_from("<H5f", raw, 2)  # after the 2 header bytes
    assert bits == (1 << 9) | (1 << 1) and (lx, rx, ry, l2, ly) == (0.25, 0.75, 1.0, 0.0, -0.5)
    r = remote.decode(list(raw))  # (as the IDL message carries them: a list of ints)
    assert r.buttons == {"B", "L1"} and (r.lx, r.ly, r.rx, r.ry) == (0.25, -0.5, 0.75, 1.0)
    assert remote.decode(struct.pack("<2xH5f16x", 0, float("nan"), 0, 0, 0, 0)).lx == 0.0


def test_the_sticks_become_a_velocity_within_the_policys_ranges_past_a_dead_zone() -> None:
    def velocity(**sticks: float) -> tuple[float, float, float]:
        return remote.velocity(remote.decode(remote.encode(**sticks)), RANGES, dead_zone=0.1)

    assert velocity(ly=0.09, lx=-0.09, rx=0.05) == (0.0, 0.0, 0.0)
    assert velocity(ly=0.55) == pytest.approx((0.5, 0.0, 0.0))  # (0.55 - 0.1) / 0.9 of 1 m/s
    assert velocity(ly=1.0, lx=1.0, rx=1.0) == pytest.approx((1.0, -0.5, -1.0))  # right: -y; right turn: -yaw
    assert velocity(ly=-1.0, lx=-1.0, rx=-1.0) == pytest.approx((-1.0, 0.5, 1.0))
    assert remote.stick(0.1 + 1e-9, 0.1) == pytest.approx(0.0, abs=1e-6), "no jump at the dead zone's edge"
    assert remote.stick(3.0, 0.1) == 1.0


def test_a_combination_fires_once_per_press_and_the_estop_with_anything_else_held() -> None:
    combinations = remote.Combinations()

    def press(*buttons: str) -> list[str]:
        return combinations.pressed(remote.decode(remote.encode(buttons)))

    assert press("start") == [] and press("L1", "start") == ["start"] and press("L1", "start") == []
    assert press("L1", "start", "B") == ["estop"], "one press, whatever else is held"
    assert press() == [] and press("select") == ["stop"] and press("select", "B") == ["estop"]

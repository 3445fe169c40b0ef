"""Fuzzing the policy node: every fault category alone, then random bursts of all of them."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from trot.testing.faults.policy import PolicyUnderTest
from trot.testing.faults.table import Row
from trot.testing.graph import threaded_graph


def fuzz_catalogue(p: PolicyUnderTest) -> dict[str, tuple[str, Callable[[np.random.Generator], object], bool]]:
    """name -> (topic, generator, must_damp). Faults must force DAMPING; the others must not."""
    from trot.policies.settings import SafetyConfig

    names, default, safety = p.names, p.default, SafetyConfig()  # (the node runs with the default limits)

    def huge(rng) -> float:
        return float(rng.choice([-1, 1]) * 10.0 ** rng.uniform(3, 300))

    def beyond(rng, limit: float) -> float:
        """Past ``limit`` (either sign): just past it (by 0.1 % to 100 % of it) or far (up to 1e300)."""
        over = limit * 10.0 ** rng.uniform(-3, 0) if rng.random() < 0.5 else 10.0 ** rng.uniform(3, 300)
        return float(rng.choice([-1, 1]) * (limit + over))

    def outside_range(rng) -> list[float]:
        """One joint's position past its range by more than the tolerance: by 1 mrad up to 1e300 rad."""
        k, v, over = int(rng.integers(12)), list(default), 10.0 ** rng.uniform(-3, 300)
        tol = safety.joint_pos_tolerance
        v[k] = float(p.upper[k] + tol + over if rng.random() < 0.5 else p.lower[k] - tol - over)
        return v

    def js(rng, **kw):
        return p.joint_state(**kw)

    def non_unit(quat: np.ndarray) -> np.ndarray:
        """Outside the norm band the controller accepts (0.9-1.1): one drawn inside it (3.6 % of them)
        would be a valid sample counted as a fault."""
        return quat * 2.0 if 0.9 <= float(np.linalg.norm(quat)) <= 1.1 else quat

    def with_one(rng, value) -> list[float]:
        v = list(default)
        v[int(rng.integers(12))] = value
        return v

    def twist(vx, vy, wz):
        from geometry_msgs.msg import Twist

        t = Twist()
        t.linear.x, t.linear.y, t.angular.z = vx, vy, wz
        return t

    perm = lambda rng: [int(i) for i in rng.permutation(12)]  # noqa: E731
    return {
        # joint states
        "short position array": ("js", lambda r: js(r, position=default[: int(r.integers(0, 12))]), True),
        "long velocity array": ("js", lambda r: js(r, velocity=[0.0] * int(r.integers(13, 40))), True),
        "unknown joint names": ("js", lambda r: js(r, names=[f"joint_{i}_{r.integers(1e6)}" for i in range(12)]), True),
        "a policy joint missing": (
            "js",
            lambda r: (lambda k: js(r, names=names[:k] + names[k + 1 :] + ["extra"]))(int(r.integers(12))),
            True,
        ),
        "duplicated joint name": (
            "js",
            lambda r: (lambda k: js(r, names=names[:k] + [names[(k + 1) % 12]] + names[k + 1 :]))(int(r.integers(12))),
            True,
        ),
        "NaN position": ("js", lambda r: js(r, position=with_one(r, math.nan)), True),
        "Inf velocity": ("js", lambda r: js(r, velocity=with_one(r, math.inf)[:12]), True),
        "position beyond its range": ("js", lambda r: js(r, position=outside_range(r)), True),
        "joint speed beyond its limit": (
            "js",
            lambda r: js(
                r, velocity=list(np.roll([beyond(r, safety.max_joint_velocity)] + [0.0] * 11, r.integers(12)))
            ),
            True,
        ),
        "stamp far in the future": ("js", lambda r: js(r, t=p.now() + 10.0 ** r.uniform(0, 6)), True),
        # IMU
        "non-unit quaternion": (
            "imu",
            lambda r: p.imu(quat=non_unit(r.uniform(-3, 3, 4) * (2 if r.random() < 0.5 else 0.2))),
            True,
        ),
        "zero quaternion": ("imu", lambda r: p.imu(quat=(0.0, 0.0, 0.0, 0.0)), True),
        "NaN quaternion": ("imu", lambda r: p.imu(quat=(math.nan, 0.0, 0.0, 1.0)), True),
        "Inf angular velocity": ("imu", lambda r: p.imu(gyro=(0.0, -math.inf, 0.0)), True),
        "angular speed beyond its limit": (
            "imu",
            lambda r: p.imu(gyro=np.roll([beyond(r, safety.max_angular_velocity), 0.0, 0.0], r.integers(3))),
            True,
        ),
        "IMU without orientation": ("imu", lambda r: p.imu(no_orientation=True), True),
        "IMU stamp in the future": ("imu", lambda r: p.imu(t=p.now() + 10.0 ** r.uniform(0, 6)), True),
        # velocity commands
        "NaN cmd_vel": ("cmd", lambda r: twist(math.nan, 0.0, 0.0), True),
        "Inf cmd_vel": ("cmd", lambda r: twist(0.0, 0.0, -math.inf), True),
        # not faults: dropped, clipped or simply valid
        "joint state from the past (dropped)": ("js", lambda r: js(r, t=p.now() - 10.0 ** r.uniform(0, 6)), False),
        "IMU from the past (dropped)": ("imu", lambda r: p.imu(t=p.now() - 10.0 ** r.uniform(0, 6)), False),
        "huge cmd_vel (clipped)": ("cmd", lambda r: twist(huge(r), huge(r), huge(r)), False),
        "permuted joint order (valid)": (
            "js",
            lambda r: (lambda o: js(r, names=[names[i] for i in o], position=[default[i] for i in o]))(perm(r)),
            False,
        ),
        "extra joints (valid)": (
            "js",
            lambda r: js(r, names=names + ["arm_joint"], position=default + [0.0], velocity=[0.0] * 13),
            False,
        ),
    }


def _publish(p: PolicyUnderTest, topic: str, msg) -> None:
    {"js": p.js_pub, "imu": p.imu_pub, "cmd": p.cmd_pub}[topic].publish(msg)


def fuzz_policy_node(
    messages: int = 10_000, repeats: int = 3, burst: int = 500, burst_hz: float = 6000.0, seed: int = 0
) -> list[Row]:
    """Every fault category alone (time to DAMPING, and DAMPING holds until ~/start), then random
    bursts of all categories at ``burst_hz`` until ``messages`` have been sent."""
    rng = np.random.default_rng(seed)
    rows: list[Row] = []
    with threaded_graph() as r:
        p = PolicyUnderTest(r)
        catalogue = fuzz_catalogue(p)
        p.ensure_running(timeout=60.0)
        sent, delays, stalls, missed, false_trips, not_held = 0, [], [], [], [], []
        for _ in range(repeats):
            for name, (topic, make, must_damp) in catalogue.items():
                p.ensure_running()
                msg = make(rng)
                t = time.time()
                _publish(p, topic, msg)
                sent += 1
                if must_damp:
                    damped = p.first_damping_after(t)
                    if damped is None:
                        missed.append(name)
                        continue
                    delays.append(damped - t)
                    stalls.append(p.stall(t, damped))
                    time.sleep(4 * p.period)  # the valid stream goes on: DAMPING must hold
                    if p.mode != "damping" or p.position_commands_since(damped + 0.01):
                        not_held.append(name)
                else:
                    time.sleep(4 * p.period)
                    if p.mode != "running" or p.first_damping_after(t, timeout=0.0) is not None:
                        false_trips.append(name)
        single = sent
        names = list(catalogue)
        faults = [n for n in names if catalogue[n][2]]
        rates, burst_delays, after_end, burst_stalls, burst_ok = [], [], [], [], True
        faulty = sum(catalogue[n][2] for n in catalogue) * repeats
        while sent < messages:
            p.ensure_running()
            picks = [str(rng.choice(faults))] + [str(rng.choice(names)) for _ in range(min(burst, messages - sent) - 1)]
            batch = [(catalogue[n][0], catalogue[n][1](rng)) for n in picks]
            t0 = time.time()
            for i, (topic, msg) in enumerate(batch):
                while time.time() < t0 + i / burst_hz:
                    pass  # paced: a sleep would oversleep at these rates
                _publish(p, topic, msg)
            t1 = time.time()
            faulty += sum(catalogue[n][2] for n in picks)
            sent += len(batch)
            rates.append(len(batch) / max(t1 - t0, 1e-9))
            damped = p.first_damping_after(t0)
            if damped is None:
                missed.append("burst")
            else:  # DDS keeps the last 10 per topic: the first fault may be overwritten, a later one counts
                burst_delays.append(damped - t0)
                after_end.append(damped - t1)
                burst_stalls.append(p.stall(t0, damped))
                burst_ok &= damped - t0 <= (t1 - t0) + 3 * p.period
        time.sleep(0.3)
        alive = p.alive() and "Traceback" not in p.log()
        diag = p.diagnostics() if alive else {}
        if alive:  # and it still works
            p.ensure_running()
        with p.lock:
            violations, commands = list(p.violations), len(p.commands)
        p.stop_stream()
        period_ms = p.period * 1e3
    d, s = np.array(delays) * 1e3, np.array(stalls) * 1e3
    rows.append(Row("policy node", f"fuzz: {sent} messages in {len(catalogue)} categories "
                    f"({single} one by one, the rest in bursts at {np.median(rates) if rates else 0:.0f} msg/s)",
                    f"{len(violations)} non-finite or out-of-limit commands of {commands} published; "
                    f"{0 if alive else 1} crashes; {faulty} faulty messages sent, the node rejected "
                    f"{diag.get('bad_inputs', '?')} (DDS keeps the newest 10 per topic of a burst)",
                    "0 bad commands, 0 crashes", not violations and alive,
                    {"sent": sent, "violations": violations, "alive": alive, "commands": commands}))  # fmt: skip
    rows.append(Row("policy node", f"fuzz: time to DAMPING after a bad input ({len(d)} faults, "
                    f"{len(faults)} kinds)", f"p50 {np.median(d):.1f} ms, max {d.max():.1f} ms "
                    f"({d.max() / period_ms:.2f} periods); missed: {sorted(set(missed)) or 'none'}; longest stall "
                    f"measured {s.max():.1f} ms", "every fault, <= 3 periods (60 ms)",
                    not missed and d.max() <= 3 * period_ms,
                    {"delays_ms": d.tolist(), "stalls_ms": s.tolist(), "missed": missed,
                     "period_ms": period_ms}))  # fmt: skip
    if burst_delays:
        b = np.array(burst_delays) * 1e3
        rows.append(Row("policy node", f"fuzz bursts: time to DAMPING from burst start ({len(b)} bursts)",
                        f"p50 {np.median(b):.1f} ms, max {b.max():.1f} ms; burst rate p50 {np.median(rates):.0f} "
                        "msg/s", ">= 5 kHz; <= 3 periods after the burst ends",
                        burst_ok and np.median(rates) >= 5000,
                        {"rates": rates, "delays_ms": b.tolist(), "after_end_ms": (np.array(after_end) * 1e3).tolist(),
                         "stalls_ms": (np.array(burst_stalls) * 1e3).tolist(), "period_ms": period_ms}))  # fmt: skip
    rows.append(Row("policy node", "fuzz: DAMPING holds until ~/start; dropped, clipped, valid inputs keep RUNNING",
                    f"left DAMPING by itself: {sorted(set(not_held)) or 'never'}; false trips: "
                    f"{sorted(set(false_trips)) or 'none'}", "never; none",
                    not not_held and not false_trips, {"not_held": not_held, "false_trips": false_trips}))  # fmt: skip
    return rows

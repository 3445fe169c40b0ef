"""Per-control-step latency of the deploy-side runtime (numpy + ONNX Runtime, batch 1, one thread).

    python bench/runtime_latency.py [policies/go2_flat]

Prints p50/p99 of (1) inference alone, (2) observation build + inference + action mapping from
named joint state, and (3) ONNX Runtime's own floor for a 48-512-256-128-12 ELU MLP, measured in
the same process.
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trot.policies.runtime import PolicyRuntime, make_session

CALLS = 20_000


def percentiles(samples_ns: np.ndarray) -> str:
    us = samples_ns / 1e3
    return f"p50 {np.percentile(us, 50):6.1f} us   p99 {np.percentile(us, 99):6.1f} us   mean {us.mean():6.1f} us"


def time_calls(fn, calls: int = CALLS) -> np.ndarray:
    for _ in range(1000):
        fn()
    out = np.empty(calls, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(calls):
        t0 = clock()
        fn()
        out[i] = clock() - t0
    return out


def reference_mlp(sizes=(48, 512, 256, 128, 12), seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "obs"
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        inits += [
            numpy_helper.from_array(rng.normal(0, a**-0.5, (a, b)).astype(np.float32), f"W{i}"),
            numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}"),
        ]
        out = "actions" if i == len(sizes) - 2 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"b{i}"], [out if i == len(sizes) - 2 else f"z{i}"]))
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Elu", [f"z{i}"], [out]))
        prev = out
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("obs", TensorProto.FLOAT, [1, sizes[0]])],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, [1, sizes[-1]])], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def main(path: Path) -> None:
    runtime = PolicyRuntime(path)
    c = runtime.contract
    rng = np.random.default_rng(0)
    names = list(c.joint_names)[::-1]  # as a driver might publish them
    q = np.array(c.default_joint_pos)[::-1] + rng.normal(0, 0.05, c.num_joints)
    dq = rng.normal(0, 1.0, c.num_joints)
    quat, gyro, cmd = np.array([0.99, 0.05, -0.05, 0.0]), np.array([0.1, -0.2, 0.05]), np.array([0.5, 0.0, 0.2])
    runtime.observe(names, q, dq, quat, gyro, cmd)
    print(f"{path}: {c.robot}, obs {c.num_obs}, actions {c.num_joints}; {CALLS} calls each, batch 1, 1 thread")
    print(f"  inference alone            : {percentiles(time_calls(runtime.infer))}   (target p99 <= 50 us)")
    step = time_calls(lambda: runtime.step(names, q, dq, quat, gyro, cmd))
    print(f"  obs + inference + mapping  : {percentiles(step)}   (target p99 <= 100 us)")

    session = make_session(reference_mlp())
    binding = session.io_binding()
    obs = np.zeros((1, 48), np.float32)
    act = np.zeros((1, 12), np.float32)
    binding.bind_cpu_input("obs", obs)
    binding.bind_output("actions", "cpu", 0, np.float32, [1, 12], act.ctypes.data)
    print(f"  ORT floor 48-512-256-128-12: {percentiles(time_calls(lambda: session.run_with_iobinding(binding)))}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("policies/go2_flat"))

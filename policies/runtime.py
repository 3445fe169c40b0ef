"""Run a policy artifact on a robot: named robot state in, named joint targets out.

numpy + ONNX Runtime only. The observation is built by :class:`ObservationBuilder`, the very
code the training environment runs, and the action is mapped by :class:`ActionMapper`. All
arrays are allocated once; ONNX Runtime reads and writes them in place through an IO binding,
so a control step allocates no array (only a few transient view objects).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from trot.policies.artifact import INPUT_NAME, OUTPUT_NAME, read_artifact
from trot.policies.contract import Contract
from trot.policies.observation import ActionMapper, ObservationBuilder, joint_index


def make_session(model: bytes, threads: int = 1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


class PolicyRuntime:
    """One policy artifact, ready to be called once per control step."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        model, self.contract = read_artifact(path)
        self.path = Path(path)
        self.onnx_sha256 = hashlib.sha256(model).hexdigest()  # which network this is, for logs and bags
        self.session = make_session(model, threads)
        c: Contract = self.contract
        self.joint_names = c.joint_names
        self.builder = ObservationBuilder(c, batch_size=1)
        self.mapper = ActionMapper(c, batch_size=1)
        nj = c.num_joints
        self._quat = np.zeros((1, 4))
        self._inputs = {name: view[0] for name, view in self.builder.inputs.items()}  # the builder's, row 0
        self.last_action = np.zeros((1, nj))
        self._last_action_row = self.last_action[0]
        self.action = np.zeros((1, nj), dtype=np.float32)
        self._orders: dict[tuple[str, ...], np.ndarray] = {}
        self._binding = self.session.io_binding()
        self._binding.bind_cpu_input(INPUT_NAME, self.builder.out)
        self._binding.bind_output(OUTPUT_NAME, "cpu", 0, np.float32, list(self.action.shape), self.action.ctypes.data)
        self._scratch_action = np.zeros_like(self.action)  # warm_up's output: the real one stays untouched
        self._scratch_targets = np.zeros_like(self.mapper.targets)
        self._warm_binding = self.session.io_binding()
        self._warm_binding.bind_cpu_input(INPUT_NAME, self.builder.out)
        self._warm_binding.bind_output(
            OUTPUT_NAME, "cpu", 0, np.float32, list(self.action.shape), self._scratch_action.ctypes.data
        )
        self.infer()  # warm-up: ONNX Runtime's first run is slow, and must not be a control step
        self.action[:] = 0.0

    def reset(self) -> None:
        """Forget the previous action (start of an episode / after a stop)."""
        self.last_action[:] = 0.0

    def joint_order(self, names: Sequence[str]) -> np.ndarray:
        """Index array taking arrays ordered like ``names`` to the contract's order (cached; a driver
        sends one order, so the cache is kept small against a stream of ever-new orders)."""
        key = tuple(names)
        order = self._orders.get(key)
        if order is None:
            order = joint_index(key, self.contract)
            if len(self._orders) >= 16:
                self._orders.clear()
            self._orders[key] = order
        return order

    def observe(
        self,
        joint_names: Sequence[str],
        joint_pos: np.ndarray,
        joint_vel: np.ndarray,
        base_quat_wxyz: np.ndarray,
        base_ang_vel: np.ndarray,
        command: np.ndarray,
    ) -> np.ndarray:
        """Build the observation ([1, num_obs] float32, a reused buffer) from named robot state."""
        order = self.joint_order(joint_names)
        inputs = self._inputs  # written in place: no intermediate copies on the control path
        last_action = self._last_action_row
        for name, value in (("base_ang_vel", base_ang_vel), ("command", command), ("last_action", last_action)):
            if name in inputs:
                np.copyto(inputs[name], value)
        for name, value in (("joint_pos", joint_pos), ("joint_vel", joint_vel)):
            if name in inputs:
                np.take(value, order, out=inputs[name], mode="clip")  # (valid indices; "raise" would buffer)
        self._quat[0] = base_quat_wxyz
        return self.builder.finish(self._quat)

    def warm_up(
        self,
        joint_names: Sequence[str],
        joint_pos: np.ndarray,
        joint_vel: np.ndarray,
        base_quat_wxyz: np.ndarray,
        base_ang_vel: np.ndarray,
        command: np.ndarray,
    ) -> np.ndarray:
        """A control step's code on these inputs, its targets in a scratch buffer: the next :meth:`step`
        reads nothing this writes (observation terms are rebuilt each step). Why: a process that slept
        finds its caches cold, and a cold step costs many times a warm one; run just before a sample is
        due, this brings the weights and the code back."""
        self.observe(joint_names, joint_pos, joint_vel, base_quat_wxyz, base_ang_vel, command)
        self.session.run_with_iobinding(self._warm_binding)
        return self.mapper(self._scratch_action, out=self._scratch_targets)[0]

    def infer(self) -> np.ndarray:
        """Run the network on the observation buffer; returns the (reused) action buffer."""
        self.session.run_with_iobinding(self._binding)
        return self.action

    def step(
        self,
        joint_names: Sequence[str],
        joint_pos: np.ndarray,
        joint_vel: np.ndarray,
        base_quat_wxyz: np.ndarray,
        base_ang_vel: np.ndarray,
        command: np.ndarray,
    ) -> np.ndarray:
        """One control step: joint position targets in the contract's joint order (``self.joint_names``).

        The returned array is reused by the next call; copy it to keep it.
        """
        self.observe(joint_names, joint_pos, joint_vel, base_quat_wxyz, base_ang_vel, command)
        self.mapper.clip(self.infer(), out=self.last_action)  # (the next observation's last_action)
        return self.mapper.targets_of(self.last_action)[0]

    def step_named(self, joint_pos: Mapping[str, float], joint_vel: Mapping[str, float], **state) -> dict[str, float]:
        """Convenience form of :meth:`step` with dicts keyed by joint name (allocates)."""
        names = list(joint_pos)
        targets = self.step(
            names,
            np.array([joint_pos[n] for n in names]),
            np.array([joint_vel[n] for n in names]),
            **state,
        )
        return dict(zip(self.joint_names, targets.tolist(), strict=True))

    def act_batch(self, obs: np.ndarray) -> np.ndarray:
        """Actions for a batch of observations (evaluation, parity checks)."""
        obs = np.asarray(obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.contract.num_obs:
            raise ValueError(f"observation has shape {obs.shape}, the policy expects [batch, {self.contract.num_obs}]")
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: obs})[0]

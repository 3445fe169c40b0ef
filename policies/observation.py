"""The one implementation of observation building and action mapping.

The training environment calls it on a batch of thousands of simulated robots, the ROS node and
the replay tools on a batch of one. Both paths run exactly this code, so an observation cannot
mean one thing in training and another on the robot. Buffers are allocated once: the hot path
only writes into them.
"""

from __future__ import annotations

import numpy as np

from policies.contract import Contract


def projected_gravity(quat_wxyz: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Unit gravity (0, 0, -1) expressed in the body frame of orientation ``quat_wxyz`` [..., 4].

    Written out (rather than through a rotation library) because it runs every control step on
    the robot and per environment in training: three expressions, no allocation when ``out`` is
    given. tests/test_observation.py checks it against MuJoCo's own quaternion rotation.
    """
    q = np.asarray(quat_wxyz)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    if out is None:
        out = np.empty(q.shape[:-1] + (3,), dtype=np.result_type(q.dtype, np.float32))
    out[..., 0] = 2.0 * (w * y - x * z)
    out[..., 1] = -2.0 * (y * z + w * x)
    out[..., 2] = 2.0 * (x * x + y * y) - 1.0
    return out


class ObservationBuilder:
    """Builds ``[batch, contract.num_obs]`` float32 observations in the contract's term order.

    Inputs are in physical units and already in the contract's joint order (callers that
    receive joints by name reorder with :func:`joint_index`).
    """

    def __init__(self, contract: Contract, batch_size: int = 1) -> None:
        self.contract = contract
        self.batch_size = batch_size
        self.out = np.zeros((batch_size, contract.num_obs), dtype=np.float32)
        self._default = np.asarray(contract.default_joint_pos, dtype=np.float64)
        self._gravity = np.zeros((batch_size, 3), dtype=np.float64)
        self._scratch = np.zeros((2, batch_size), dtype=np.float64)
        self._joint_tmp = np.zeros((batch_size, contract.num_joints), dtype=np.float64)
        slices = contract.term_slices()
        self._plan = [(t.name, self.out[:, slices[t.name]], float(t.scale)) for t in contract.obs_terms]
        self.scale_vector = np.concatenate([np.full(t.size, t.scale, dtype=np.float32) for t in contract.obs_terms])

    def build(
        self,
        *,
        base_ang_vel: np.ndarray,
        base_quat_wxyz: np.ndarray,
        command: np.ndarray,
        joint_pos: np.ndarray,
        joint_vel: np.ndarray,
        last_action: np.ndarray,
    ) -> np.ndarray:
        """Fill and return the (reused) observation buffer."""
        for name, view, scale in self._plan:
            if name == "base_ang_vel":
                np.multiply(base_ang_vel, scale, out=view)
            elif name == "projected_gravity":
                self._projected_gravity(base_quat_wxyz)
                np.multiply(self._gravity, scale, out=view)
            elif name == "command":
                np.multiply(command, scale, out=view)
            elif name == "joint_pos":
                np.subtract(joint_pos, self._default, out=self._joint_tmp)
                np.multiply(self._joint_tmp, scale, out=view)
            elif name == "joint_vel":
                np.multiply(joint_vel, scale, out=view)
            elif name == "last_action":
                np.multiply(last_action, scale, out=view)
            else:  # pragma: no cover - Contract.validate() rejects unknown terms
                raise AssertionError(name)
        return self.out

    def _projected_gravity(self, q: np.ndarray) -> None:
        """:func:`projected_gravity` into ``self._gravity`` with in-place ufuncs only (no temporaries)."""
        w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
        a, b = self._scratch
        g = self._gravity
        np.multiply(w, y, out=a)
        np.multiply(x, z, out=b)
        np.subtract(a, b, out=a)
        np.multiply(a, 2.0, out=g[:, 0])
        np.multiply(y, z, out=a)
        np.multiply(w, x, out=b)
        np.add(a, b, out=a)
        np.multiply(a, -2.0, out=g[:, 1])
        np.multiply(x, x, out=a)
        np.multiply(y, y, out=b)
        np.add(a, b, out=a)
        np.multiply(a, 2.0, out=a)
        np.subtract(a, 1.0, out=g[:, 2])


class ActionMapper:
    """Maps raw policy actions to joint position targets: ``default + scale * clip(action)``."""

    def __init__(self, contract: Contract, batch_size: int = 1) -> None:
        self.contract = contract
        self._default = np.asarray(contract.default_joint_pos, dtype=np.float64)
        self._scale = float(contract.action_scale)
        self._clip = float(contract.action_clip)
        self.targets = np.zeros((batch_size, contract.num_joints), dtype=np.float64)

    def __call__(self, action: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        out = self.targets if out is None else out
        np.clip(action, -self._clip, self._clip, out=out)
        np.multiply(out, self._scale, out=out)
        np.add(out, self._default, out=out)
        return out

    def actions_of(self, targets: np.ndarray) -> np.ndarray:
        """The actions that map to these joint targets (contract order): for logs, which hold targets."""
        return (np.asarray(targets, dtype=np.float64) - self._default) / self._scale


def joint_index(source_names: list[str] | tuple[str, ...], contract: Contract) -> np.ndarray:
    """Index array ``idx`` such that ``source_values[idx]`` is in the contract's joint order.

    Raises ``KeyError`` listing every contract joint that the source does not provide.
    """
    position = {name: i for i, name in enumerate(source_names)}
    missing = [name for name in contract.joint_names if name not in position]
    if missing:
        raise KeyError(f"joints required by the policy contract are missing: {missing}")
    return np.array([position[name] for name in contract.joint_names], dtype=np.intp)

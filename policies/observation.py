"""The one implementation of observation building and action mapping.

The training environment calls it on a batch of thousands of simulated robots, the ROS node and
the replay tools on a batch of one. Both paths run exactly this code, so an observation cannot
mean one thing in training and another on the robot. Buffers are allocated once: the hot path
only writes into them.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from trot.policies.contract import Contract
from trot.policies.terms import ACTION, GRAVITY_CONSTANT, gravity_quadratic, projected_gravity

__all__ = ["ActionMapper", "ObservationBuilder", "joint_index", "projected_gravity"]


class ObservationBuilder:
    """Builds ``[batch, contract.num_obs]`` float32 observations in the contract's term order.

    Inputs are in physical units and already in the contract's joint order (callers that
    receive joints by name reorder with :func:`joint_index`). What is subtracted from each term is
    its definition's ``offset`` (:mod:`trot.policies.terms`): the definition an artifact carries is
    what this code computes.
    """

    def __init__(self, contract: Contract, batch_size: int = 1) -> None:
        contract.check_definitions()
        self.contract = contract
        self.batch_size = batch_size
        self.out = np.zeros((batch_size, contract.num_obs), dtype=np.float32)
        slices = contract.term_slices()
        # every term in physical units, laid out like the observation: callers may write their
        # inputs straight into these views (PolicyRuntime does) and call finish()
        self._raw = np.zeros((batch_size, contract.num_obs), dtype=np.float64)
        self.inputs = {t.name: self._raw[:, slices[t.name]] for t in contract.obs_terms}
        # observation = (raw - offset) * scale, two ufuncs over the whole vector
        self._offset = np.zeros(contract.num_obs, dtype=np.float64)
        for term in contract.obs_terms:
            if term.definition.offset is not None:
                self._offset[slices[term.name]] = getattr(contract, term.definition.offset)
        if "projected_gravity" in slices:  # its constant part, outside the quadratic form (gravity_quadratic)
            self._offset[slices["projected_gravity"]] = 0.0 - GRAVITY_CONSTANT  # (0.0 -: no negative zeros)
        self._scale = np.concatenate([np.full(t.size, t.scale, dtype=np.float64) for t in contract.obs_terms])
        self._tmp = np.zeros_like(self._raw)
        self._qq = np.zeros((batch_size, 4, 4), dtype=np.float64)
        self._gravity = self.inputs.get("projected_gravity")

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
        given = {"base_ang_vel": base_ang_vel, "command": command, "joint_pos": joint_pos,
                 "joint_vel": joint_vel, "last_action": last_action}  # fmt: skip
        for name, view in self.inputs.items():
            if name != "projected_gravity":
                np.copyto(view, given[name])
        return self.finish(base_quat_wxyz)

    def finish(self, base_quat_wxyz: np.ndarray) -> np.ndarray:
        """The observation from what is in :attr:`inputs` and the orientation ``[batch, 4]`` (w, x, y, z)."""
        if self._gravity is not None:  # the "- 1" of g_z is in the offset
            gravity_quadratic(base_quat_wxyz, self._qq, self._gravity)
        np.subtract(self._raw, self._offset, out=self._tmp)
        np.multiply(self._tmp, self._scale, out=self.out)
        return self.out


class ActionMapper:
    """Maps raw policy actions to joint position targets: ``default + scale * clip(action)``, with the
    offset, scale and clip the contract fields that :data:`trot.policies.terms.ACTION` names."""

    def __init__(self, contract: Contract, batch_size: int = 1) -> None:
        contract.check_definitions()
        self.contract = contract
        self._default = np.asarray(getattr(contract, ACTION["offset"]), dtype=np.float64)
        self._scale = float(getattr(contract, ACTION["scale"]))
        self._clip = float(getattr(contract, ACTION["clip"]))
        self.targets = np.zeros((batch_size, contract.num_joints), dtype=np.float64)

    def clip(self, action: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The action as mapped: clipped to +-action_clip. This, not the network's raw output, is the
        next observation's ``last_action``, in training and on the robot alike."""
        out[...] = action  # (clipped in out's float64: the network's float32 would round the clip itself)
        return np.clip(out, -self._clip, self._clip, out=out)

    def __call__(self, action: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        out = self.targets if out is None else out
        return self.targets_of(self.clip(action, out), out)

    def targets_of(self, clipped: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Joint targets of an action :meth:`clip` already clipped (it is kept as ``last_action``:
        clipping it again would be the control step's work twice)."""
        out = self.targets if out is None else out
        np.multiply(clipped, self._scale, out=out)
        np.add(out, self._default, out=out)
        return out

    def actions_of(self, targets: np.ndarray) -> np.ndarray:
        """The actions that map to these joint targets (contract order): for logs, which hold targets."""
        return (np.asarray(targets, dtype=np.float64) - self._default) / self._scale


def joint_index(source_names: list[str] | tuple[str, ...], contract: Contract) -> np.ndarray:
    """Index array ``idx`` such that ``source_values[idx]`` is in the contract's joint order.

    Raises ``KeyError`` listing every contract joint that the source does not provide, and
    ``ValueError`` listing every name the source gives more than once (which of them is meant?).
    """
    position = {name: i for i, name in enumerate(source_names)}
    if len(position) != len(source_names):
        twice = sorted(name for name, count in Counter(source_names).items() if count > 1)  # (linear: a
        # message may carry thousands of names, and this runs under the controller's lock)
        more = f" and {len(twice) - 8} more" if len(twice) > 8 else ""
        raise ValueError(f"joint names {twice[:8]}{more} more than once")
    missing = [name for name in contract.joint_names if name not in position]
    if missing:
        raise KeyError(f"joints required by the policy contract are missing: {missing}")
    return np.array([position[name] for name in contract.joint_names], dtype=np.intp)

"""The deployment contract: everything a consumer needs to turn robot state into a policy
observation and a policy action into joint targets.

It is defined once here, built by the training environment from its configs, carried inside
exported artifacts, and read back by every consumer (export, sim2sim eval, ROS node, replay).
Joints are identified by *name*; arrays are in the contract's joint order.

Version 2 describes itself: each observation term carries its definition (reading, frame, unit,
order, offset, clip; :mod:`trot.policies.terms`), and the contract says how the terms make the
network's input and how its output becomes joint targets, so that a controller written from the
artifact alone computes the same observation and targets. Version 1 (no definitions) is still
read: its terms get the definitions of their names, and it serializes as it was written, so its
digests still verify.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field
from typing import Any

from trot.policies.terms import ACTION, JOINT_ORDER, OBS_TERMS, OBSERVATION, TermDefinition

CONTRACT_VERSION = 2
#: Versions this trot reads (a version-1 contract has no definitions: they come from the term names).
READABLE_VERSIONS = (1, 2)
#: Fields a version-1 contract does not have.
V2_FIELDS = ("observation_definition", "action_definition")

#: Observation terms the shared builder knows, with their size (J = number of joints); each is
#: defined in :data:`trot.policies.terms.OBS_TERMS`.
KNOWN_OBS_TERMS: dict[str, str] = {
    name: "J" if d.components == JOINT_ORDER else str(len(d.components)) for name, d in OBS_TERMS.items()
}

COMMAND_AXES = ("lin_vel_x", "lin_vel_y", "ang_vel_yaw")


class ContractError(ValueError):
    """A contract is malformed; the message names the offending field."""


@dataclass(frozen=True)
class ObsTerm:
    """One slice of the observation vector: ``scale * value`` of a named quantity, as ``definition``
    says (left out: the definition of ``name`` in :data:`trot.policies.terms.OBS_TERMS`)."""

    name: str
    size: int
    scale: float = 1.0
    definition: TermDefinition | None = None

    def __post_init__(self) -> None:
        if self.definition is None and self.name in OBS_TERMS:
            object.__setattr__(self, "definition", OBS_TERMS[self.name])


@dataclass(frozen=True)
class Contract:
    """Observation layout, joint order, default pose, action mapping, gains and timing."""

    robot: str
    joint_names: tuple[str, ...]
    default_joint_pos: tuple[float, ...]
    action_scale: float
    action_clip: float
    kp: tuple[float, ...]
    kd: tuple[float, ...]
    torque_limits: tuple[float, ...]
    joint_pos_lower: tuple[float, ...]
    joint_pos_upper: tuple[float, ...]
    control_dt: float
    obs_terms: tuple[ObsTerm, ...]
    command_ranges: dict[str, tuple[float, float]]
    version: int = CONTRACT_VERSION
    provenance: dict[str, Any] = field(default_factory=dict)
    observation_definition: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(OBSERVATION))
    """How the terms make the network's input (:data:`trot.policies.terms.OBSERVATION`)."""
    action_definition: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(ACTION))
    """How the network's output becomes joint targets (:data:`trot.policies.terms.ACTION`)."""

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ derived layout
    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def num_obs(self) -> int:
        return sum(t.size for t in self.obs_terms)

    def term_slices(self) -> dict[str, slice]:
        """Where each observation term lives in the observation vector."""
        out, start = {}, 0
        for term in self.obs_terms:
            out[term.name] = slice(start, start + term.size)
            start += term.size
        return out

    # ------------------------------------------------------------------ validation
    def upgraded(self) -> Contract:
        """This contract at the current version (definitions written out)."""
        return dataclasses.replace(self, version=CONTRACT_VERSION)

    def validate(self) -> None:
        _check_version(self.version)
        if not self.robot:
            raise ContractError("contract.robot: empty robot name")
        n = len(self.joint_names)
        if n == 0:
            raise ContractError("contract.joint_names: no joints")
        if len(set(self.joint_names)) != n:
            dupes = sorted({j for j in self.joint_names if self.joint_names.count(j) > 1})
            raise ContractError(f"contract.joint_names: duplicated joints {dupes}")
        for name in ("default_joint_pos", "kp", "kd", "torque_limits", "joint_pos_lower", "joint_pos_upper"):
            values = getattr(self, name)
            if len(values) != n:
                raise ContractError(f"contract.{name}: has {len(values)} entries, expected {n} (one per joint)")
            if not all(math.isfinite(v) for v in values):
                raise ContractError(f"contract.{name}: contains a non-finite value")
        for name in ("action_scale", "action_clip", "control_dt"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ContractError(f"contract.{name}: must be a positive finite number, got {value!r}")
        if any(lo >= hi for lo, hi in zip(self.joint_pos_lower, self.joint_pos_upper, strict=True)):
            raise ContractError("contract.joint_pos_lower/upper: a lower limit is not below its upper limit")
        seen = set()
        for i, term in enumerate(self.obs_terms):
            if term.name not in KNOWN_OBS_TERMS:
                raise ContractError(
                    f"contract.obs_terms[{i}].name: unknown term {term.name!r} (known: {sorted(KNOWN_OBS_TERMS)})"
                )
            if term.name in seen:
                raise ContractError(f"contract.obs_terms[{i}].name: term {term.name!r} appears twice")
            seen.add(term.name)
            if not isinstance(term.definition, TermDefinition):
                raise ContractError(f"contract.obs_terms[{i}].definition: not a term definition")
            expected = term.definition.size(n)
            if term.size != expected:
                raise ContractError(
                    f"contract.obs_terms[{i}].size: {term.name} has size {term.size}, expected {expected}"
                )
            if not math.isfinite(term.scale):
                raise ContractError(f"contract.obs_terms[{i}].scale: non-finite")
        for name in V2_FIELDS:
            if not isinstance(getattr(self, name), dict):
                raise ContractError(f"contract.{name}: expected a mapping")
        if set(self.command_ranges) != set(COMMAND_AXES):
            raise ContractError(
                f"contract.command_ranges: expected keys {list(COMMAND_AXES)}, got {sorted(self.command_ranges)}"
            )
        for axis, (lo, hi) in self.command_ranges.items():
            if not lo <= hi:
                raise ContractError(f"contract.command_ranges.{axis}: lower {lo} above upper {hi}")

    def check_definitions(self) -> None:
        """Refuse a contract whose definitions are not what this trot computes (the builder and the
        action mapper call this: the definitions an artifact carries are the math that runs)."""
        for i, term in enumerate(self.obs_terms):
            ours = OBS_TERMS[term.name]
            if term.definition != ours:
                differ = [k for k, v in term.definition.to_dict().items() if ours.to_dict()[k] != v]
                raise ContractError(
                    f"contract.obs_terms[{i}].definition: {term.name} is defined differently from the term this "
                    f"trot computes (in {differ})"
                )
        for name, ours in (("observation_definition", OBSERVATION), ("action_definition", ACTION)):
            theirs = getattr(self, name)
            if theirs != ours:
                differ = sorted(k for k in set(ours) | set(theirs) if theirs.get(k) != ours.get(k))
                raise ContractError(f"contract.{name}: differs from what this trot computes (in {differ})")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """The contract as written in its version (a version-1 contract has no definitions)."""
        d = asdict(self)
        d["obs_terms"] = [
            {"name": t.name, "size": t.size, "scale": t.scale}
            | ({"definition": t.definition.to_dict()} if self.version >= 2 else {})
            for t in self.obs_terms
        ]
        if self.version < 2:
            for name in V2_FIELDS:
                del d[name]
        d["command_ranges"] = {k: list(v) for k, v in self.command_ranges.items()}
        for key in (
            "joint_names",
            "default_joint_pos",
            "kp",
            "kd",
            "torque_limits",
            "joint_pos_lower",
            "joint_pos_upper",
        ):
            d[key] = list(d[key])
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    def field_digests(self) -> dict[str, str]:
        """A short SHA-256 per field: stored beside the contract at export, so that a contract
        edited afterwards (two joint names swapped, a gain changed) is refused, naming the field."""
        return {
            key: hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]
            for key, value in self.to_dict().items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Contract:
        if not isinstance(data, dict):
            raise ContractError(f"contract: expected a mapping, got {type(data).__name__}")
        if "version" not in data:
            raise ContractError("contract.version: missing")
        _check_version(data["version"])
        version = int(data["version"])
        known = set(cls.__dataclass_fields__) - (set() if version >= 2 else set(V2_FIELDS))
        unknown = sorted(set(data) - known)
        if unknown:
            raise ContractError(f"contract: unknown field(s) {unknown}")
        required = {
            n for n, f in cls.__dataclass_fields__.items() if f.default is MISSING and f.default_factory is MISSING
        } | (set(V2_FIELDS) if version >= 2 else set())
        missing = sorted(required - set(data))
        if missing:
            raise ContractError(f"contract: missing field(s) {missing}")

        def parse(key: str, convert: Callable[[Any], Any]) -> Any:
            """data[key] converted, or a ContractError naming the field and what is wrong with it."""
            try:
                return convert(data[key])
            except ContractError:
                raise
            except (TypeError, ValueError, IndexError, KeyError, AttributeError) as exc:
                raise ContractError(f"contract.{key}: malformed ({type(exc).__name__}: {exc})") from exc

        undefined: list[int] = []

        def obs_terms(value: Any) -> tuple[ObsTerm, ...]:
            terms = []
            fields = {"name", "size", "scale"} | ({"definition"} if version >= 2 else set())
            for i, t in enumerate(value):
                extra = sorted(set(t) - fields)
                if extra:
                    raise ContractError(f"contract.obs_terms[{i}]: unknown field(s) {extra}")
                definition = None  # version 1: the definition of the term's name
                if version >= 2 and "definition" not in t:
                    undefined.append(i)  # (reported after the checks of names and sizes)
                elif version >= 2:
                    try:
                        definition = TermDefinition.from_dict(t["definition"])
                    except (TypeError, ValueError, KeyError) as exc:
                        raise ContractError(f"contract.obs_terms[{i}].definition: {exc}") from exc
                terms.append(ObsTerm(name=str(t["name"]), size=int(t["size"]), scale=float(t.get("scale", 1.0)),
                                     definition=definition))  # fmt: skip
            return tuple(terms)

        definitions = {name: parse(name, _mapping) for name in V2_FIELDS if version >= 2}

        contract = cls(
            robot=parse("robot", str),
            joint_names=parse("joint_names", lambda v: tuple(str(j) for j in v)),
            default_joint_pos=_floats(data, "default_joint_pos"),
            action_scale=parse("action_scale", float),
            action_clip=parse("action_clip", float),
            kp=_floats(data, "kp"),
            kd=_floats(data, "kd"),
            torque_limits=_floats(data, "torque_limits"),
            joint_pos_lower=_floats(data, "joint_pos_lower"),
            joint_pos_upper=_floats(data, "joint_pos_upper"),
            control_dt=parse("control_dt", float),
            obs_terms=parse("obs_terms", obs_terms),
            command_ranges=parse(
                "command_ranges", lambda v: {str(k): (float(lo), float(hi)) for k, (lo, hi) in v.items()}
            ),
            version=parse("version", int),
            provenance=parse("provenance", lambda v: dict(v or {})) if "provenance" in data else {},
            **definitions,
        )
        if undefined:
            raise ContractError(f"contract.obs_terms[{undefined[0]}].definition: missing")
        return contract

    @classmethod
    def from_json(cls, text: str) -> Contract:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ContractError(f"contract: metadata is not valid JSON ({exc})") from exc
        return cls.from_dict(data)


def _check_version(version: Any) -> None:
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise ContractError(
            f"contract.version: {version!r} is not supported (this trot reads versions {list(READABLE_VERSIONS)})"
        )


def _mapping(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a mapping, got {type(value).__name__}")
    return copy.deepcopy(value)


def _floats(data: dict[str, Any], key: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in data[key])
    except (TypeError, ValueError) as exc:
        raise ContractError(f"contract.{key}: expected a list of numbers ({exc})") from exc

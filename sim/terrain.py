"""The ground of a world: a terrain config and the one function that adds it to a spec.

The ground is every geom of the world body: the robot's contact sensors target that body, and
domain randomization scales the friction of every geom, so a terrain kind only has to add geoms
to ``spec.worldbody``. A new kind (heightfield, boxes, stairs) is one function in ``TERRAINS``
and one more value of :attr:`TerrainConfig.kind`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import mujoco

from trot.sim.strict import ConfigError

GROUND_BODY = "world"
"""Body that holds the ground's geoms (contact sensors target it)."""
FLOOR = "floor"
"""Name of the flat terrain's plane geom."""
GROUND_FRICTION = (1.0, 0.005, 0.0001)
"""Sliding, torsional and rolling friction of the ground (the robot's feet use the same)."""


@dataclass(frozen=True)
class TerrainConfig:
    """What the robot walks on."""

    kind: Literal["flat"] = "flat"
    """Terrain type: ``flat`` is an infinite plane."""


def _flat(spec: mujoco.MjSpec, terrain: TerrainConfig) -> list[mujoco.MjsGeom]:
    """An infinite plane (the MJCF's own plane where it has one)."""
    floor = next((g for g in spec.worldbody.geoms if g.type == mujoco.mjtGeom.mjGEOM_PLANE), None)
    if floor is None:
        floor = spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05])
    floor.name = FLOOR
    return [floor]


TERRAINS: dict[str, Callable[[mujoco.MjSpec, TerrainConfig], list[mujoco.MjsGeom]]] = {"flat": _flat}
"""Terrain kind -> the function that adds its geoms to the world body and returns them."""


def add_ground(spec: mujoco.MjSpec, terrain: TerrainConfig) -> list[mujoco.MjsGeom]:
    """Add the terrain's geoms to ``spec``'s world body, colliding with the robot: the ground
    collides with what the robot's geoms accept (contype 1), never with itself (conaffinity 0)."""
    if terrain.kind not in TERRAINS:
        raise ConfigError(f"terrain.kind: {terrain.kind!r} is not one of {sorted(TERRAINS)}")
    geoms = TERRAINS[terrain.kind](spec, terrain)
    for geom in geoms:
        geom.contype, geom.conaffinity = 1, 0
        geom.condim = 3
        geom.friction = list(GROUND_FRICTION)
    return geoms

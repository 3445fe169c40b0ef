"""Unitree's low-level DDS interface in a test: a CycloneDDS probe beside the node processes, and
the simulated chain (board, bridge, policy node) started in one ROS domain and one Unitree domain.

The probe is a participant of its own (CycloneDDS directly, not the SDK's one-per-process channel
factory), on the loopback interface, in the domain the test gives; it records every ``rt/lowcmd``
and ``rt/lowstate`` with its arrival time and can write ``rt/lowcmd`` (a command with a bad CRC).
"""

from __future__ import annotations

import contextlib
import time

from cyclonedds.core import DDSException, Listener
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from unitree_sdk2py.idl.unitree_go.msg.dds_ import LowCmd_, LowState_

from trot.ros_nodes import unitree_map as um
from trot.testing import POLICY
from trot.testing.graph import Graph, start_policy
from trot.testing.processes import next_domain

LOOPBACK = ("<CycloneDDS><Domain Id='any'><General><Interfaces><NetworkInterface name='lo'/></Interfaces>"
            "</General></Domain></CycloneDDS>")  # fmt: skip


class UnitreeProbe:
    """rt/lowcmd and rt/lowstate as they arrive (``time.time()``, message), and a rt/lowcmd writer."""

    def __init__(self, domain: int | None = None, lowstate: bool = True) -> None:
        """``lowstate=False``: no rt/lowstate reader (500 Hz of deserializing in this process)."""
        self.domain = next_domain() if domain is None else domain
        self._domain = Domain(self.domain, LOOPBACK)
        self.participant = DomainParticipant(self.domain)
        self.lowcmd: list[tuple[float, LowCmd_]] = []
        self.lowstate: list[tuple[float, LowState_]] = []
        self._readers = [
            DataReader(self.participant, Topic(self.participant, topic, kind),
                       listener=Listener(on_data_available=lambda reader, out=out: _take(reader, out)))
            for topic, kind, out in ((um.LOWCMD_TOPIC, LowCmd_, self.lowcmd),
                                     (um.LOWSTATE_TOPIC, LowState_, self.lowstate))[:2 if lowstate else 1]
        ]  # fmt: skip
        self._writers: dict[str, DataWriter] = {}

    def write_lowcmd(self, cmd: LowCmd_) -> None:
        self._write(um.LOWCMD_TOPIC, LowCmd_, cmd)

    def write_lowstate(self, state: LowState_) -> None:
        """A state beside the board's (a second writer, as a faulty or foreign one would be)."""
        self._write(um.LOWSTATE_TOPIC, LowState_, state)

    def _write(self, topic: str, kind: type, msg: LowCmd_ | LowState_) -> None:
        if topic not in self._writers:
            self._writers[topic] = DataWriter(self.participant, Topic(self.participant, topic, kind))
        self._writers[topic].write(msg)

    def close(self) -> None:
        """Delete the participant and everything in it, listeners first, here and now (idempotent):
        left to the garbage collector, a reader could be deleted while its listener runs."""
        for reader in self._readers:
            reader.set_listener(None)
        entities = [*self._readers, *self._writers.values()]
        entities += [e.topic for e in entities]
        if self.participant is not None:
            entities.append(self.participant)
        self._readers, self._writers, self.participant = [], {}, None
        for entity in entities:
            entity.__del__()  # (cyclonedds: deletes it now, and the collector's call later does nothing)

    def wait_for(self, what: str, count: int, timeout: float = 20.0) -> bool:
        end = time.time() + timeout
        while len(getattr(self, what)) < count and time.time() < end:
            time.sleep(0.01)
        return len(getattr(self, what)) >= count


STALE_PERIODS = "stale_periods:=10.0"
"""The policy node's sensor watchdog in the chain: 0.2 s over its default 2 periods (40 ms). Four node
processes and a probe on this 2-core host (beside whatever else runs) stall a process past 40 ms now
and then, which trips the watchdog into DAMPING, rightly on a robot, and would end a walk."""


def _take(reader: DataReader, out: list) -> None:
    """What arrived, with its arrival time; nothing once the reader is being deleted (the probe's
    test ended while samples still came)."""
    with contextlib.suppress(DDSException):
        out.extend((time.time(), s) for s in reader.take(64))


def start_chain(g: Graph, unitree_domain: int, *bridge_params: str, policy: bool = True,
                policy_params: tuple[str, ...] = ()) -> None:  # fmt: skip
    """The simulated Go2 board (index 0), the bridge (1) and, with ``policy``, the policy node (2,
    :func:`start_chain_policy`); returns once the policy runs."""
    g.start("trot.ros_nodes.unitree_board", f"dds_domain:={unitree_domain}")
    g.start("trot.ros_nodes.unitree_bridge", f"policy_path:={POLICY}", "network_interface:=lo",
            f"dds_domain:={unitree_domain}", *bridge_params)  # fmt: skip
    if policy:
        start_chain_policy(g, *policy_params)


def start_chain_policy(g: Graph, *params: str) -> int:
    """The policy node beside the bridge (:func:`trot.testing.graph.start_policy`, with
    :data:`STALE_PERIODS`); its index."""
    return start_policy(g, STALE_PERIODS, *params)

"""Unitree's low-level DDS interface in a test: a CycloneDDS probe beside the node processes, and
the simulated chain (board, bridge, policy node) started in one ROS domain and one Unitree domain.

The probe is a participant of its own (CycloneDDS directly, not the SDK's one-per-process channel
factory), on the loopback interface, in the domain the test gives; it records every ``rt/lowcmd``
and ``rt/lowstate`` with its arrival time and can write ``rt/lowcmd`` (a command with a bad CRC).
"""

from __future__ import annotations

import time

from cyclonedds.core import Listener
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from unitree_sdk2py.idl.unitree_go.msg.dds_ import LowCmd_, LowState_

from trot.ros_nodes import unitree_map as um
from trot.testing import POLICY
from trot.testing.graph import Graph
from trot.testing.processes import next_domain

LOOPBACK = ("<CycloneDDS><Domain Id='any'><General><Interfaces><NetworkInterface name='lo'/></Interfaces>"
            "</General></Domain></CycloneDDS>")  # fmt: skip


class UnitreeProbe:
    """rt/lowcmd and rt/lowstate as they arrive (``time.time()``, message), and a rt/lowcmd writer."""

    def __init__(self, domain: int | None = None) -> None:
        self.domain = next_domain() if domain is None else domain
        self._domain = Domain(self.domain, LOOPBACK)
        self.participant = DomainParticipant(self.domain)
        self.lowcmd: list[tuple[float, LowCmd_]] = []
        self.lowstate: list[tuple[float, LowState_]] = []
        self._readers = [
            DataReader(self.participant, Topic(self.participant, topic, kind), listener=Listener(
                on_data_available=lambda reader, out=out: out.extend((time.time(), s) for s in reader.take(64))))
            for topic, kind, out in ((um.LOWCMD_TOPIC, LowCmd_, self.lowcmd),
                                     (um.LOWSTATE_TOPIC, LowState_, self.lowstate))
        ]  # fmt: skip
        self._writer: DataWriter | None = None

    def write_lowcmd(self, cmd: LowCmd_) -> None:
        if self._writer is None:
            self._writer = DataWriter(self.participant, Topic(self.participant, um.LOWCMD_TOPIC, LowCmd_))
        self._writer.write(cmd)

    def wait_for(self, what: str, count: int, timeout: float = 20.0) -> bool:
        end = time.time() + timeout
        while len(getattr(self, what)) < count and time.time() < end:
            time.sleep(0.01)
        return len(getattr(self, what)) >= count


def start_chain(g: Graph, unitree_domain: int, *bridge_params: str, policy: bool = True) -> None:
    """The simulated Go2 board (index 0), the bridge (1) and, with ``policy``, the policy node (2,
    start_mode auto); returns once the policy runs (a watchdog trip of a stalled machine during its
    stand-up is answered with ~/start, counted as a restart, as start_robot_and_policy does)."""
    g.start("trot.ros_nodes.unitree_board", f"dds_domain:={unitree_domain}")
    g.start("trot.ros_nodes.unitree_bridge", f"policy_path:={POLICY}", "network_interface:=lo",
            f"dds_domain:={unitree_domain}", *bridge_params)  # fmt: skip
    if not policy:
        return
    index = g.start("trot.ros_nodes.policy_node", f"policy_path:={POLICY}", "start_mode:=auto", "standup_s:=1.5")
    assert g.wait_until(lambda: "standup -> " in g.log(index), timeout=40.0), g.log(index) + g.log(1)
    if "standup -> running" not in g.log(index):
        assert "standup -> damping: watchdog" in g.log(index), g.log(index)
        g.restarted("watchdog during the automatic stand-up")
        g.press_start_until_it_runs(index)

"""Read a ROS 2 XML launch file and start what it describes, for machines without `launch`.

Only the subset trot's launch files use is understood: <launch>, <arg>, <group if/unless>,
<node pkg exec name namespace output if/unless> with <param name value>, <param from> and
<remap from to>; substitutions $(var NAME) and $(find-pkg-share PKG). Anything else raises
:class:`UnsupportedLaunchConstruct` so a test fails rather than silently starting something
different from what `ros2 launch` would. Nodes start the way launch_ros starts them: the package's
executable from ``lib/<pkg>/`` of its ament prefix with ``--ros-args -r __node:= -r __ns:=``,
the parameter files and one generated file for the name/value parameters, in document order.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from ament_index_python.packages import get_package_prefix, get_package_share_directory

SUBSTITUTION = re.compile(r"\$\(([^)]*)\)")
ALLOWED = {
    "launch": set(),
    "arg": {"name", "default", "description"},
    "group": {"if", "unless"},
    "node": {"pkg", "exec", "name", "namespace", "output", "if", "unless"},
    "param": {"name", "value", "from"},
    "remap": {"from", "to"},
}


class UnsupportedLaunchConstruct(ValueError):
    pass


@dataclass
class NodeSpec:
    pkg: str
    exec: str
    name: str
    namespace: str
    parameters: list[Path | dict] = field(default_factory=list)  # files and {name: value} in order
    remaps: list[tuple[str, str]] = field(default_factory=list)

    @property
    def fqn(self) -> str:
        return f"{self.namespace.rstrip('/')}/{self.name}"

    def command(self, workdir: Path) -> list[str]:
        """The executable from the package's ament prefix plus launch_ros's arguments."""
        exe = Path(get_package_prefix(self.pkg)) / "lib" / self.pkg / self.exec
        if not exe.is_file():
            raise FileNotFoundError(f"{self.pkg}: no executable {exe}")
        args = [str(exe), "--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace not in ("", "/"):
            args += ["-r", f"__ns:={self.namespace}"]
        for i, params in enumerate(self.parameters):
            if isinstance(params, dict):  # launch_ros writes name/value params to a temporary file too
                file = workdir / f"{self.fqn.strip('/').replace('/', '_')}_params_{i}.yaml"
                file.write_text(yaml.safe_dump({self.fqn: {"ros__parameters": params}}))
                params = file
            args += ["--params-file", str(params)]
        for src, dst in self.remaps:
            args += ["-r", f"{src}:={dst}"]
        return args


def _substitute(text: str, args: dict[str, str]) -> str:
    def one(match: re.Match) -> str:
        kind, _, rest = match.group(1).strip().partition(" ")
        rest = rest.strip()
        if kind == "var":
            if rest not in args:
                raise UnsupportedLaunchConstruct(f"$(var {rest}): no such launch argument")
            return args[rest]
        if kind == "find-pkg-share":
            return get_package_share_directory(rest)
        raise UnsupportedLaunchConstruct(f"substitution $({match.group(1)}) is not supported here")

    return SUBSTITUTION.sub(one, text)


def _attrs(element: ET.Element, args: dict[str, str]) -> dict[str, str]:
    unknown = set(element.attrib) - ALLOWED.get(element.tag, set())
    if element.tag not in ALLOWED:
        raise UnsupportedLaunchConstruct(f"<{element.tag}> is not supported here")
    if unknown:
        raise UnsupportedLaunchConstruct(f"<{element.tag}> attributes {sorted(unknown)} are not supported here")
    return {k: _substitute(v, args) for k, v in element.attrib.items()}


def _condition(attrs: dict[str, str]) -> bool:
    def truth(value: str) -> bool:
        if value.lower() in ("true", "1"):
            return True
        if value.lower() in ("false", "0"):
            return False
        raise UnsupportedLaunchConstruct(f"condition value {value!r} is not true/false")

    if "if" in attrs and not truth(attrs["if"]):
        return False
    return not ("unless" in attrs and truth(attrs["unless"]))


def resolve(path: str | Path, **given: str) -> list[NodeSpec]:
    """The nodes the launch file starts with these launch arguments (``name=value``)."""
    root = ET.parse(path).getroot()
    if root.tag != "launch":
        raise UnsupportedLaunchConstruct(f"{path}: root element <{root.tag}>, expected <launch>")
    args: dict[str, str] = {}
    declared: set[str] = set()
    nodes: list[NodeSpec] = []

    def walk(parent: ET.Element) -> None:
        for el in parent:
            if el.tag == "arg":
                a = _attrs(el, args)
                declared.add(a["name"])
                if a["name"] in given:
                    args[a["name"]] = given[a["name"]]
                elif "default" in a:
                    args[a["name"]] = a["default"]
                else:
                    raise UnsupportedLaunchConstruct(f"launch argument {a['name']!r} has no default and no value")
            elif el.tag == "group":
                if _condition(_attrs(el, args)):
                    walk(el)
            elif el.tag == "node":
                a = _attrs(el, args)
                if not _condition(a):
                    continue
                ns = a.get("namespace", "")
                node = NodeSpec(a["pkg"], a["exec"], a["name"], f"/{ns.strip('/')}" if ns.strip("/") else "")
                for child in el:
                    c = _attrs(child, args)
                    if child.tag == "param" and "from" in c:
                        node.parameters.append(Path(c["from"]))
                    elif child.tag == "param":
                        value = yaml.safe_load(c["value"]) if c["value"] != "" else ""
                        if node.parameters and isinstance(node.parameters[-1], dict):
                            node.parameters[-1][c["name"]] = value
                        else:
                            node.parameters.append({c["name"]: value})
                    elif child.tag == "remap":
                        node.remaps.append((c["from"], c["to"]))
                    else:
                        raise UnsupportedLaunchConstruct(f"<{child.tag}> inside <node> is not supported here")
                nodes.append(node)
            else:
                _attrs(el, args)  # raises for anything unknown
                raise UnsupportedLaunchConstruct(f"<{el.tag}> at the top level is not supported here")

    walk(root)
    undeclared = set(given) - declared
    if undeclared:
        raise UnsupportedLaunchConstruct(f"{path}: no launch arguments {sorted(undeclared)}")
    return nodes

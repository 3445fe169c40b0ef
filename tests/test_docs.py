"""The generated node parameter reference (docs/ros/parameters.md) and shared parameter file
(launch/config/nodes.yaml) are current and come from the dataclasses."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import yaml

from trot.ros_nodes import param_docs
from trot.ros_nodes.params import doc

ROW = re.compile(r"^\| `(\w+)` \| ([\w ]+) \| `(.*)` \| (.*) \|$")


def _sections(page: str) -> dict[str, dict[str, tuple[str, str, str]]]:
    """{node: {parameter: (type, default, description)}} from the page's tables."""
    found: dict[str, dict[str, tuple[str, str, str]]] = {}
    node = None
    for line in page.splitlines():
        if line.startswith("## "):
            node = line[3:].strip()
            found[node] = {}
        elif node and (m := ROW.match(line)):
            assert m.group(1) not in found[node], f"{node}: {m.group(1)} twice"
            found[node][m.group(1)] = (m.group(2), m.group(3), m.group(4))
    return found


def test_the_committed_parameter_page_is_current() -> None:
    assert param_docs.PAGE.read_text() == param_docs.render(), (
        "docs/ros/parameters.md is stale: run `python -m trot.ros_nodes.param_docs` (or `make docs`)"
    )
    assert param_docs.main(["--check"]) == 0


def test_every_field_of_every_node_dataclass_is_on_the_page_with_its_default_and_doc() -> None:
    sections = _sections(param_docs.PAGE.read_text())
    nodes = param_docs.nodes()
    assert set(sections) == {n.name for n in nodes}
    for node in nodes:
        fields = [(cls, f) for cls in node.params for f in dataclasses.fields(cls)]
        assert list(sections[node.name]) == [f.name for _, f in fields], node.name  # all, in declaration order
        for cls, f in fields:
            type_name, default, description = sections[node.name][f.name]
            assert type_name == param_docs.type_name(f) and default == param_docs.default_text(f), f.name
            assert description == param_docs.field_doc(cls, f).replace("|", "\\|"), f.name
    # both ways of documenting a field reach the page: doc(...) metadata and attribute docstrings
    policy = sections["trot_policy"]
    assert policy["control_trigger"][2].startswith("timer: tick on absolute deadlines")
    assert policy["stale_periods"][2].startswith("Sensors older than this many control periods")
    assert policy["stale_periods"][:2] == ("double", "2.0") and sections["trot_recorder"]["topics"][0] == "string array"


@dataclass
class _Params:
    rate_hz: float = field(default=4.0, metadata=doc("how often | per second"))
    names: list[str] = field(default_factory=lambda: ["a", "b"])
    """Listed names."""
    enabled: bool = True
    label: str = ""


def test_the_page_is_rendered_from_whatever_the_dataclasses_say() -> None:
    page = param_docs.render([param_docs.NodeDoc("x_node", "x_exe", "A node.", (_Params,))])
    assert _sections(page) == {"x_node": {
        "rate_hz": ("double", "4.0", "how often \\| per second"),
        "names": ("string array", "[a, b]", "Listed names."),
        "enabled": ("bool", "true", ""),
        "label": ("string", '""', ""),
    }}  # fmt: skip
    assert f"`{__name__}._Params`" in page and "`x_exe`" in page


def test_the_committed_parameter_file_is_current_and_holds_every_default() -> None:
    assert param_docs.PARAMETER_FILE.read_text() == param_docs.render_parameter_file(), (
        "launch/config/nodes.yaml is stale: run `python -m trot.ros_nodes.param_docs` (or `make docs`)"
    )
    sections = yaml.safe_load(param_docs.PARAMETER_FILE.read_text())
    for node in param_docs.nodes():
        if node.name not in param_docs.ROBOT_FILE_KEYS:
            assert f"/**/{node.name}" not in sections
            continue
        values = sections[f"/**/{node.name}"]["ros__parameters"]
        fields = [f for cls in node.params for f in dataclasses.fields(cls)]
        robot_keys = set(param_docs.ROBOT_FILE_KEYS[node.name])
        assert list(values) == [f.name for f in fields if f.name not in robot_keys], node.name
        for f in fields:
            if f.name in robot_keys:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            # parsed back as the node will parse it: the same value and the same type (a double stays a double)
            assert values[f.name] == default and type(values[f.name]) is type(default), (node.name, f.name)


def test_the_parameter_file_is_rendered_with_each_description_above_its_key() -> None:
    text = param_docs.render_parameter_file([param_docs.NodeDoc("trot_sim", "x_exe", "A node.", (_Params,))])
    body = text.split("/**/trot_sim:\n  ros__parameters:\n", 1)[1]
    assert body.splitlines()[:5] == ["    # how often | per second", "    rate_hz: 4.0", "    # Listed names.",
                                     "    names: [a, b]", "    enabled: true"]  # fmt: skip
    assert yaml.safe_load(text)["/**/trot_sim"]["ros__parameters"] == {
        "rate_hz": 4.0, "names": ["a", "b"], "enabled": True, "label": ""}  # fmt: skip

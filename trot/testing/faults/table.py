"""A row of the reliability table, and the table as Markdown."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Row:
    """One line of the reliability table."""

    area: str
    scenario: str
    figure: str
    target: str
    ok: bool
    data: dict = field(default_factory=dict)
    """The raw figures (the test suite checks these, with allowances for a loaded CI machine)."""


def print_table(rows: list[Row]) -> str:
    lines = ["| area | scenario | measured | target | ok |", "|---|---|---|---|---|"]
    lines += [f"| {r.area} | {r.scenario} | {r.figure} | {r.target} | {'yes' if r.ok else '**NO**'} |" for r in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text

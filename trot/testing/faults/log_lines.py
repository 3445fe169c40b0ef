"""The policy node's bad-input WARN lines read back (:class:`trot.policies.inputs.BadInputLog`
writes them): the input each is about, the fault category it shows, and the faults it says went
unlogged, by category. Tests and the fault bench count with it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from trot.policies.inputs import Fault

_LINE = re.compile(r"(?:^|\]: )bad input: (.*)$")  # the message, or after the logger's "[WARN] [...] [node]: "
CATEGORIES = {str(fault): fault for fault in Fault}
_COUNTS = re.compile(
    r"; not logged since this input's previous line [\d.]+ s ago: (\d+) \((.*)\)(?:; none for [\d.]+ s)?$"
)


@dataclass
class BadInputLine:
    input: str
    fault: Fault | None  # the category of the fault it shows; None: a line of counts only
    first: bool = False  # the first occurrence of its category
    unlogged: dict[Fault, int] = field(default_factory=dict)


def parse(line: str) -> BadInputLine | None:
    """One line of a log (with or without the logger's prefix), or None if it is no bad-input line.
    Raises ValueError for a bad-input line that does not read as BadInputLog writes them."""
    if (found := _LINE.search(line.rstrip("\n"))) is None:  # (a mode transition names one too: not its line)
        return None
    text = found[1]
    unlogged: dict[Fault, int] = {}
    if (counts := _COUNTS.search(text)) is not None:
        for item in counts[2].split(", "):
            name, n = item.rsplit(" ", 1)
            unlogged[CATEGORIES[name]] = int(n)
        if sum(unlogged.values()) != int(counts[1]):
            raise ValueError(f"the counts do not add up to their total: {line!r}")
        text = text[: counts.start()]
    if text.endswith(" faults") and not text.endswith("]"):
        if not unlogged:
            raise ValueError(f"a line of counts without counts: {line!r}")
        return BadInputLine(text[: -len(" faults")], None, False, unlogged)
    if not text.endswith("]") or " [" not in text:
        raise ValueError(f"no fault category in {line!r}")
    tag = text[text.rindex(" [") + 2 : -1].split(", ")
    fault = CATEGORIES[tag[0]]
    return BadInputLine(fault.input, fault, "first occurrence" in tag, unlogged)

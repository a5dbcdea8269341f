"""The reliability suite's tally: what was tried and what held, printed as a table at the end of the run."""
from __future__ import annotations

from collections import defaultdict

_TALLY: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])


class Tally:
    """Counts per (section, case): attempts and attempts that held (answered as documented, lost nothing)."""

    def add(self, section: str, case: str, tried: int, held: int) -> None:
        entry = _TALLY[(section, case)]
        entry[0] += tried
        entry[1] += held


def terminal_summary(terminalreporter) -> None:
    """Write the tally as a Markdown table (nothing when no test added to it); conftest registers it."""
    if not _TALLY:
        return
    lines = ["", "| section | case | tried | held | failed |", "|---|---|---|---|---|"]
    for (section, case), (tried, held) in sorted(_TALLY.items()):
        lines.append(f"| {section} | {case} | {tried} | {held} | {tried - held} |")
    terminalreporter.write_line("\n".join(lines))

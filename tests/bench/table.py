"""The shared shape of the benchmark table: one `Row` per figure, and how rows are printed.

Every bench module offers `run(quick: bool) -> list[Row]`; `run_all.py` prints them as one
table. Figures are strings with their units, so each bench decides how to show its numbers.
"""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

COLUMNS = ("benchmark", "figure", "ours", "peer", "ratio", "target", "verdict")


class Row(NamedTuple):
    """One figure beside its peer measured in the same run."""

    benchmark: str
    figure: str
    ours: str
    peer: str = "-"
    ratio: str = "-"
    target: str = "-"
    verdict: str = "info"


def verdict(ok: bool) -> str:
    """The verdict column for a figure that has a target."""
    return "ok" if ok else "MISSED"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def mib(size: float) -> str:
    return f"{size / 2**20:.1f} MiB"


def factor(value: float, digits: int = 2) -> str:
    """A ratio such as 1.23x; a row near its target asks for more digits (1.304x is not 1.30x)."""
    return f"{value:.{digits}f}x"


def machine_line() -> str:
    """CPU model, cores, RAM, Python, OS and the date: where the figures came from."""
    cpu = platform.processor() or platform.machine()
    ram = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 2**20:.0f} GiB RAM"
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    python = f"Python {sys.version.split()[0]}"
    system = f"{platform.system()} {platform.release()}"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{cpu}, {cores} cores, {ram}, {python}, {system}; {when}"


def format_table(rows: list[Row], *, markdown: bool) -> str:
    """The rows as an aligned text table, or a Markdown table for the README."""
    cells = [COLUMNS, *rows]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(COLUMNS))]
    right = {2, 3, 4}  # numbers
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |"]
        lines.append(
            "|" + "|".join("---:" if i in right else "---" for i in range(len(COLUMNS))) + "|"
        )
        lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(lines)

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    out = [line(COLUMNS), "  ".join("-" * w for w in widths)]
    previous = None
    for row in rows:
        if previous is not None and row.benchmark != previous:
            out.append("")
        out.append(line(row))
        previous = row.benchmark
    return "\n".join(out)

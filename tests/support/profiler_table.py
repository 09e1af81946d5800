"""A reader of torch.profiler's key_averages().table() text: how reports/published.json's week-2 top operators
(`top_ops`) were derived from the seed's table, kept to check that data (tests/host/test_report_markdown.py)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from kit.report.week2 import NOT_MODEL_WORK, split_totals

_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6}


def parse_time_us(text: str) -> Optional[float]:
    m = re.fullmatch(r"\s*([0-9.]+)\s*(us|ms|s)\s*", text)
    return float(m.group(1)) * _UNITS_US[m.group(2)] if m else None


@dataclass(frozen=True)
class TableRow:
    name: str
    cells: dict[str, str]  # header -> cell text


def parse_profiler_table(table: str) -> list[TableRow]:
    """Rows of a key_averages().table() text, columns cut at the separator line's dash runs."""
    lines = split_totals(table).split("\n")
    seps = [i for i, l in enumerate(lines) if l.strip() and set(l.strip()) <= {"-", " "}]
    if len(seps) < 2:
        return []
    spans = [m.span() for m in re.finditer(r"-+", lines[seps[0]])]
    header_line = lines[seps[0] + 1]
    # Headers are right-aligned but may drift from the dash runs (the published table's do): split on gaps.
    headers = re.split(r"\s{2,}", header_line.strip())
    if len(headers) != len(spans):
        headers = [header_line[a:b].strip() for a, b in spans]
    rows = []
    for line in lines[seps[0] + 2:seps[-1]]:
        if not line.strip() or set(line.strip()) <= {"-", " "}:
            continue
        cells = {h: line[a:b].strip() for h, (a, b) in zip(headers, spans)}
        rows.append(TableRow(cells.get(headers[0], ""), cells))
    return rows


def top_ops_from_table(table: str, n: int) -> tuple[str, list[tuple[str, float]]]:
    """(column used, [(op, ms)]) for the top n ops by self device time, else self CPU time."""
    rows = parse_profiler_table(table)
    for column in ("Self CUDA", "Self XPU", "Self Device", "Self CPU"):
        if rows and column in rows[0].cells:
            values = [(r.name, parse_time_us(r.cells[column])) for r in rows]
            ops = [(name, us / 1e3) for name, us in values if us is not None and name not in NOT_MODEL_WORK]
            ops.sort(key=lambda kv: (-kv[1], kv[0]))
            return column.replace("Self ", "self ") + " time", ops[:n]
    return "self time", []

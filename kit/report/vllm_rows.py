"""Week 1's vLLM rows beyond the study's table: engine clock vs client clock, where the time to first token goes, the
configurations beside the study's, and the key comparison awq / awq_marlin.

Engine numbers are derived on read (core/engine_samples.py) from vLLM's raw per-request timestamps; only differences
within one clock, or of two intervals, are shown, never a timestamp of one clock against another's.
"""
from __future__ import annotations

import statistics
from typing import Callable, Optional, Sequence

from kit.report.common import (
    DASH, WITHIN_SPREAD, Group, Loaded, Spread, pipe_table, ratio_range, ratio_within_spread, text, variant_of,
)
from kit.report.published import PublishedWeek1
from core import engine_samples as es
from core.engine_samples import EngineTimestamps
from core.results import BenchResult

AWQ, MARLIN = "vLLM (awq)", "vLLM (awq_marlin)"
STUDY_CONFIG = {"vllm": "study configuration (CUDA graphs, async scheduling off)"}


def engine_iterations(r: BenchResult) -> list[Optional[EngineTimestamps]]:
    return list(r.samples.engine.iterations) if r.samples.engine else []


# f(client TTFT, client TPOT, one iteration's raw engine timestamps): a per-iteration value, or None.
PerIteration = Callable[[float, float, EngineTimestamps], Optional[float]]


def _per_iteration(r: BenchResult, f: PerIteration) -> list[float]:
    """f for every iteration that has engine timestamps; the values are derived here, on read (core.engine_samples)."""
    out = []
    for ttft, tpot, stamps in zip(r.samples.ttft_ms, r.samples.tpot_ms, engine_iterations(r)):
        value = f(ttft, tpot, stamps) if stamps else None
        if value is not None:
            out.append(value)
    return out


def _tpot_gap_pct(_ttft: float, tpot: float, stamps: EngineTimestamps) -> Optional[float]:
    return es.tpot_gap_pct(tpot, stamps)


def _client_side_ms(ttft: float, _tpot: float, stamps: EngineTimestamps) -> Optional[float]:
    return es.client_side_ms(ttft, stamps)


def _engine_only(interval: Callable[[EngineTimestamps], float]) -> PerIteration:
    return lambda _ttft, _tpot, stamps: interval(stamps)


def clock_check_text(r: BenchResult) -> Optional[str]:
    """The harness overhead against the engine's clocks, per iteration; None without engine timestamps."""
    tpot_pct = _per_iteration(r, _tpot_gap_pct)
    ttft_ms = _per_iteration(r, _client_side_ms)
    if not tpot_pct and not ttft_ms:
        return None
    parts = []
    if tpot_pct:
        parts.append(f"client TPOT vs the engine core's (last_token_ts − first_token_ts) / (N − 1): "
                     f"{min(tpot_pct):+.3f}% to {max(tpot_pct):+.3f}% per iteration (median "
                     f"{statistics.median(tpot_pct):+.3f}%, n={len(tpot_pct)})")
    if ttft_ms:
        parts.append(f"client TTFT − the frontend's first_token_latency: median {statistics.median(ttft_ms):+.3f} ms "
                     f"({min(ttft_ms):+.3f} to {max(ttft_ms):+.3f} ms, n={len(ttft_ms)})")
    return "; ".join(parts) + (". The engine reads its own clocks, so these differences are the client's own share of "
                                "each figure, printed whatever their sign")


# The stages of the time to first token: (column, what it spans and on which clocks, per-iteration value).
TTFT_STAGES: tuple[tuple[str, str, PerIteration], ...] = (
    ("queue (ms)", "queued → scheduled, engine-core clock", _engine_only(es.queued_to_scheduled_ms)),
    ("prefill (ms)", "scheduled → first token (the prefill step and its sampling), engine-core clock",
     _engine_only(es.scheduled_to_first_token_ms)),
    ("frontend (ms)", "the frontend's first_token_latency minus queued → first token: arrival → queued plus first "
     "token → frontend (IPC and output processing)", _engine_only(es.frontend_ms)),
    ("client (ms)", "client TTFT minus first_token_latency: submission → arrival plus frontend → client (stream "
     "delivery)", _client_side_ms),
)


def _median_or_dash(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else DASH


def ttft_breakdown_cells(r: BenchResult) -> list[str]:
    return [_median_or_dash(_per_iteration(r, f)) for _, _, f in TTFT_STAGES]


def merges_text(r: BenchResult) -> str:
    m = r.backend.settings.get("stream_merges")
    if not m:
        return DASH
    return f"{m.get('merged_outputs', 0)} of {m.get('outputs', 0)}"


def _config_name(run: Loaded, several: bool) -> str:
    variant = variant_of(run.result)
    name = ", ".join(variant) if variant else STUDY_CONFIG.get(run.result.backend.name, "study configuration")
    return name + (f", created {run.result.created_utc}" if several else "")


def configurations(group: Group, label: str) -> list[list[Loaded]]:
    """Per configuration, its runs newest first: the study configuration's cell first (if any), then each variant."""
    out = [list(group.cells[label].runs)] if label in group.cells else []
    out += [variant_runs for _, variant_runs in sorted(group.variants.get(label, {}).items())]
    return out


def configurations_table(group: Group, label: str, ref: Callable[[Loaded], str]) -> Optional[str]:
    """Every configuration measured for one vLLM row: medians, the TTFT stages, and the change against the study's
    configuration (how much of the row is CUDA graphs, how much the scheduler's mode moves it)."""
    per_configuration = configurations(group, label)
    if not per_configuration:
        return None
    # Every run is a row; the comparison is against the study cell's value (median of its run medians).
    base = group.cells.get(label)
    engine = any(engine_iterations(run.result) for runs in per_configuration for run in runs)
    stage_headers = [column for column, _, _ in TTFT_STAGES] + ["merged outputs"] if engine else []
    rows = []
    for runs in per_configuration:
        for run in runs:
            s = run.result.summary
            vs = DASH
            if base is not None and not (len(base.runs) == 1 and run is base.newest):
                vs = (f"TTFT ×{s.ttft_ms.median / base.ttft.median:.2f}, "
                      f"TPOT ×{s.tpot_ms.median / base.tpot.median:.2f}")
            stages = [*ttft_breakdown_cells(run.result), merges_text(run.result)] if engine else []
            rows.append([_config_name(run, len(runs) > 1) + ref(run), f"{s.ttft_ms.median:.2f}",
                         f"{s.tpot_ms.median:.2f}", vs, *stages])
    headers = ["configuration", "TTFT (ms)", "TPOT (ms)", "vs the study configuration", *stage_headers]
    return pipe_table(headers, rows, align="l" + "r" * (len(headers) - 1))


CONFIGURATIONS_NOTE_PLAIN = text("week1.configurations_plain")
CONFIGURATIONS_NOTE = text("week1.configurations", stages="; ".join(
    f"**{column[:-5]}** = {what}" for column, what, _ in TTFT_STAGES))


# --------------------------------------------------------------------------- awq / awq_marlin and the floor


def floor_pct(r: BenchResult) -> Optional[float]:
    floor = r.roofline.floor_ms if r.roofline else None
    tpot = r.summary.tpot_ms.median
    return floor / tpot * 100.0 if floor and tpot > 0 else None


def _pct(value: Optional[float]) -> str:
    return DASH if value is None else f"{value:.1f}%"


def _quotient(a: Optional[float], b: Optional[float]) -> str:
    return DASH if a is None or b is None or b <= 0 else f"{a / b:.1f}×"


def _spread(group: Group, label: str, metric: str) -> Optional[Spread]:
    cell = group.cells.get(label)
    return None if cell is None else cell.spread(metric)


def quotient_cell(a: Optional[Spread], b: Optional[Spread], compared: Optional[float]) -> str:
    """a / b from the cells' values; with several runs, the ratio's range from the extremes and, when the compared
    value (the published ratio) lies inside that range, the run-to-run label."""
    if a is None or b is None or b.median <= 0:
        return DASH
    text = f"{a.median / b.median:.1f}×"
    if a.measured or b.measured:
        lo, hi = ratio_range(a, b)
        text += f" ({lo:.1f}–{hi:.1f}×" + (f"; {WITHIN_SPREAD}" if compared is not None and
                                          ratio_within_spread(a, b, compared) else "") + ")"
    return text


def cell_floor_pct(group: Group, label: str) -> Optional[float]:
    """The cell's share of the floor: the median of its runs' shares (each run measured its own bandwidth)."""
    cell = group.cells.get(label)
    shares = [x for x in (floor_pct(r.result) for r in cell.runs) if x is not None] if cell else []
    return statistics.median(shares) if shares else None


def key_comparison(groups: Sequence[Group], labels: Sequence[str], published: PublishedWeek1) -> str:
    """awq / awq_marlin for TTFT and TPOT, published and per reproduced table, with each row's % of the floor."""
    pub = {c.label: c for c in published.columns}
    both = AWQ in pub and MARLIN in pub
    pub_ttft = pub[AWQ].ttft_ms / pub[MARLIN].ttft_ms if both else None
    pub_tpot = pub[AWQ].tpot_ms / pub[MARLIN].tpot_ms if both else None
    rows = [[f"published: {published.device}, vLLM {published.version('vllm') or '?'}",
             _quotient(pub[AWQ].ttft_ms, pub[MARLIN].ttft_ms) if both else DASH,
             _quotient(pub[AWQ].tpot_ms, pub[MARLIN].tpot_ms) if both else DASH,
             *(DASH for _ in labels)]]
    for g in groups:
        rows.append([g.key.title,
                     quotient_cell(_spread(g, AWQ, "ttft_ms"), _spread(g, MARLIN, "ttft_ms"), pub_ttft),
                     quotient_cell(_spread(g, AWQ, "tpot_ms"), _spread(g, MARLIN, "tpot_ms"), pub_tpot),
                     *(_pct(cell_floor_pct(g, l)) for l in labels)])
    table = pipe_table(["table", "TTFT awq / awq_marlin", "TPOT awq / awq_marlin",
                        *(f"{l}: % of floor" for l in labels)], rows, align="l" + "r" * (2 + len(labels)))
    return "\n".join([
        "### The study's key comparison: awq / awq_marlin", "",
        text("week1.key_comparison", within=WITHIN_SPREAD), "", table])

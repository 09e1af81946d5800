"""Week 1's vLLM rows beyond the study's table: engine clock vs client clock, where the time to first token goes, the
configurations beside the study's, the key comparison awq / awq_marlin, and vLLM versions against each other.
Engine numbers (core/engine_samples.py) are only differences within one clock, or of two intervals. Versions are
compared only within one lease (one boot, one card): two leases a day apart can differ by more than two versions do
(the H200 runs of 2026-11-29)."""
from __future__ import annotations

import statistics
from dataclasses import replace
from typing import Callable, Optional, Sequence

from core import engine_samples as es
from core.engine_samples import EngineTimestamps
from core.results import BenchResult
from kit.report.common import (
    DASH, METRICS, WITHIN_SPREAD, Group, GroupKey, Loaded, Spread, ms, pipe_table, spread_ms, text, version_key,
)
from kit.report.published import PublishedWeek1

AWQ, MARLIN = "vLLM (awq)", "vLLM (awq_marlin)"
ROWS = ((AWQ, "awq"), (MARLIN, "awq_marlin"))

# f(client TTFT, client TPOT, one iteration's raw engine timestamps): a per-iteration value, or None.
PerIteration = Callable[[float, float, EngineTimestamps], Optional[float]]


def _per_iteration(r: BenchResult, f: PerIteration) -> list[float]:
    """f for every iteration that has engine timestamps."""
    engine = r.samples.engine.iterations if r.samples.engine else []
    values = (f(ttft, tpot, stamps) if stamps else None
              for ttft, tpot, stamps in zip(r.samples.ttft_ms, r.samples.tpot_ms, engine))
    return [v for v in values if v is not None]


def clock_check_text(r: BenchResult) -> Optional[str]:
    """The harness overhead against the engine's clocks, per iteration; None without engine timestamps."""
    parts = []
    if tpot_pct := _per_iteration(r, lambda _ttft, tpot, stamps: es.tpot_gap_pct(tpot, stamps)):
        parts.append(f"client TPOT vs the engine core's (last_token_ts − first_token_ts) / (N − 1): "
                     f"{min(tpot_pct):+.3f}% to {max(tpot_pct):+.3f}% per iteration (median "
                     f"{statistics.median(tpot_pct):+.3f}%, n={len(tpot_pct)})")
    if ttft_ms := _per_iteration(r, lambda ttft, _tpot, stamps: es.client_side_ms(ttft, stamps)):
        parts.append(f"client TTFT − the frontend's first_token_latency: median {statistics.median(ttft_ms):+.3f} ms "
                     f"({min(ttft_ms):+.3f} to {max(ttft_ms):+.3f} ms, n={len(ttft_ms)})")
    return "; ".join(parts) + (". The engine reads its own clocks, so these differences are the client's own share of "
                                "each figure, printed whatever their sign") if parts else None


# The stages of the time to first token (text.md's week1.configurations says what each spans, on which clocks):
# (column, per-iteration value).
TTFT_STAGES: tuple[tuple[str, PerIteration], ...] = (
    ("queue (ms)", lambda _t, _p, e: es.queued_to_scheduled_ms(e)),
    ("prefill (ms)", lambda _t, _p, e: es.scheduled_to_first_token_ms(e)),
    ("frontend (ms)", lambda _t, _p, e: es.frontend_ms(e)),
    ("client (ms)", lambda t, _p, e: es.client_side_ms(t, e)),
)


def _stage_cells(r: BenchResult) -> list[str]:
    """The median of each TTFT stage, then how many streamed outputs carried more than one token."""
    medians = [f"{statistics.median(v):.2f}" if v else DASH for v in (_per_iteration(r, f) for _, f in TTFT_STAGES)]
    m = r.backend.settings.get("stream_merges")
    return medians + [f"{m.get('merged_outputs', 0)} of {m.get('outputs', 0)}" if m else DASH]


def configurations_table(group: Group, label: str, ref: Callable[[Loaded], str]) -> str:
    """Every configuration measured for one vLLM row, one row per run: medians, the TTFT stages, and the change
    against the study cell's value (how much of the row is CUDA graphs, how much the scheduler's mode moves it)."""
    configurations, base = group.configurations(label), group.cells.get(label)
    engine = any(run.result.samples.engine and run.result.samples.engine.iterations
                 for _, runs in configurations for run in runs)
    rows = []
    for variant, runs in configurations:
        for run in runs:
            s = run.result.summary
            name = ", ".join(variant) if variant else (
                "study configuration (CUDA graphs, async scheduling off)" if run.result.backend.name == "vllm"
                else "study configuration")
            vs = DASH
            if base is not None and not (len(base.runs) == 1 and run is base.newest):
                vs = (f"TTFT ×{s.ttft_ms.median / base.spread('ttft_ms').median:.2f}, "
                      f"TPOT ×{s.tpot_ms.median / base.spread('tpot_ms').median:.2f}")
            rows.append([name + (f", created {run.result.created_utc}" if len(runs) > 1 else "") + ref(run),
                         f"{s.ttft_ms.median:.2f}", f"{s.tpot_ms.median:.2f}", vs,
                         *(_stage_cells(run.result) if engine else [])])
    headers = ["configuration", "TTFT (ms)", "TPOT (ms)", "vs the study configuration",
               *([column for column, _ in TTFT_STAGES] + ["merged outputs"] if engine else [])]
    return pipe_table(headers, rows, align="l" + "r" * (len(headers) - 1))


def quotient_cell(a: Optional[Spread], b: Optional[Spread], compared: Optional[float]) -> str:
    """a / b from the cells' values; with several runs in either cell, the ratio's range [a.lo / b.hi, a.hi / b.lo]
    (the least and the most it can be, run against run) and, when the compared value (the published ratio, or 1
    between two versions) lies inside that range, the run-to-run label."""
    if a is None or b is None or b.median <= 0:
        return DASH
    out = f"{a.median / b.median:.1f}×"
    if a.measured or b.measured:
        within = compared is not None and b.lo > 0 and a.lo / b.hi <= compared <= a.hi / b.lo
        out += f" ({a.lo / b.hi:.1f}–{a.hi / b.lo:.1f}×" + (f"; {WITHIN_SPREAD}" if within else "") + ")"
    return out


def published_ratios(published: PublishedWeek1) -> Optional[tuple[float, float]]:
    """The study's awq / awq_marlin for TTFT and TPOT; None when it lacks either row."""
    pub = {c.label: c for c in published.columns}
    if AWQ not in pub or MARLIN not in pub:
        return None
    return pub[AWQ].ttft_ms / pub[MARLIN].ttft_ms, pub[AWQ].tpot_ms / pub[MARLIN].tpot_ms


def cell_floor_pct(group: Group, label: str) -> str:
    """The cell's share of the floor: the median of its runs' shares (each run measured its own bandwidth)."""
    results = [run.result for run in group.cells[label].runs] if label in group.cells else []
    shares = [r.roofline.floor_ms / r.summary.tpot_ms.median * 100.0 for r in results  # type: ignore[union-attr]
              if r.roofline and r.roofline.floor_ms and r.summary.tpot_ms.median > 0]
    return f"{statistics.median(shares):.1f}%" if shares else DASH


def key_comparison(groups: Sequence[Group], labels: Sequence[str], published: PublishedWeek1) -> str:
    """awq / awq_marlin for TTFT and TPOT, published and per reproduced table, with each row's % of the floor."""
    pub = published_ratios(published)
    rows = [[f"published: {published.device}, vLLM {published.version('vllm') or '?'}",
             *((f"{x:.1f}×" for x in pub) if pub else (DASH, DASH)),
             *(DASH for _ in labels)]]
    for g in groups:
        awq, marlin = g.cells.get(AWQ), g.cells.get(MARLIN)
        rows.append([g.key.title, *(quotient_cell(awq and awq.spread(m), marlin and marlin.spread(m),
                                                  pub[i] if pub else None) for i, m in enumerate(METRICS)),
                     *(cell_floor_pct(g, l) for l in labels)])
    table = pipe_table(["table", "TTFT awq / awq_marlin", "TPOT awq / awq_marlin",
                        *(f"{l}: % of floor" for l in labels)], rows, align="l" + "r" * (2 + len(labels)))
    return "\n".join(["### The study's key comparison: awq / awq_marlin", "",
                      text("week1.key_comparison", within=WITHIN_SPREAD), "", table])


# vLLM versions in the same lease: (boot id, GPU uuid, the table key without its vLLM version); per vLLM version,
# per row, (TTFT, TPOT)
Lease = tuple[str, str, GroupKey]
Versions = dict[str, dict[str, tuple[Spread, Spread]]]


def comparable_leases(groups: Sequence[Group]) -> dict[Lease, Versions]:
    """Leases holding the study configuration's runs (every stack) of both rows for two or more vLLM versions."""
    by_lease: dict[Lease, dict[str, dict[str, list[Loaded]]]] = {}
    for g in groups:
        for label, _ in ROWS:
            for run in (r for c in [g.cells.get(label), *g.other_stacks.get(label, [])] if c for r in c.runs):
                p = run.result.provenance
                boot, uuid = p.host.boot_id if p.host else None, p.gpu.uuid if p.gpu else None
                if boot and uuid:  # else it pairs with nothing
                    lease = (boot, uuid, replace(g.key, vllm=""))
                    by_lease.setdefault(lease, {}).setdefault(g.key.vllm, {}).setdefault(label, []).append(run)
    out = {}
    for lease, versions in sorted(by_lease.items()):
        complete = {v: rows for v, rows in versions.items() if all(l in rows for l, _ in ROWS)}
        if len(complete) >= 2:
            out[lease] = {v: {l: tuple(Spread([getattr(r.result.summary, m).median for r in runs]) for m in METRICS)
                              for l, runs in complete[v].items()} for v in sorted(complete, key=version_key)}
    return out


def _lease_table(versions: Versions, published: PublishedWeek1) -> str:
    pub = {c.label: c for c in published.columns}
    pub_ratios = published_ratios(published)
    headers = ["row", *(f"vLLM {v} {m}" for v in versions for m in ("TTFT", "TPOT")),
               *(("published TTFT", "published TPOT") if pub_ratios else ())]
    rows = [[name, *(spread_ms(s) for v in versions for s in versions[v][label]),
             *((ms(pub[label].ttft_ms), ms(pub[label].tpot_ms)) if pub_ratios else ())] for label, name in ROWS]
    rows.append(["awq / awq_marlin", *(quotient_cell(versions[v][AWQ][i], versions[v][MARLIN][i],
                                                     pub_ratios[i] if pub_ratios else None)
                                       for v in versions for i in (0, 1)),
                 *(f"{x:.1f}×" for x in pub_ratios or ())])
    return pipe_table(headers, rows, align="l" + "r" * (len(headers) - 1))


def render_same_lease(groups: Sequence[Group], published: PublishedWeek1) -> str:
    out = ["### vLLM versions on the same GPU, same lease", ""]
    if not (leases := comparable_leases(groups)):
        return "\n".join(out + [text("week1.same_lease_none")])
    out.append(text("week1.same_lease", version=published.version("vllm") or "?", device=published.device,
                    within=WITHIN_SPREAD))
    for (boot, uuid, key), versions in leases.items():
        out += ["", f"#### {key.title}: GPU {uuid}, boot {boot[:8]}; vLLM {' vs '.join(versions)}", "",
                _lease_table(versions, published), ""]
        base, *newer = versions  # each newer version against the oldest; 1 inside the ratio's range is spread
        for v in newer:
            parts = [f"{name} {metric} {quotient_cell(versions[v][label][i], versions[base][label][i], 1.0)}"
                     for label, name in ROWS for i, metric in enumerate(("TTFT", "TPOT"))]
            out.append(f"- vLLM {v} / {base}: " + ", ".join(parts) + " (below 1: the newer version is faster)")
    return "\n".join(out)

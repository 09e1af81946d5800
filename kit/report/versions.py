"""vLLM 0.12.0 (the study's) against a newer vLLM in the same lease: one machine boot (provenance.host.boot_id) and
one card (provenance.gpu.uuid). Results without those fields never pair: two leases a day apart can differ by more
than two versions do (the H200 runs of 2026-11-29)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

from kit.report.common import (
    WITHIN_SPREAD, Group, GroupKey, Loaded, Spread, ms, pipe_table, spread_ms, text,
)
from kit.report.published import PublishedWeek1
from kit.report.vllm_rows import AWQ, MARLIN, quotient_cell as _quotient

ROWS = ((AWQ, "awq"), (MARLIN, "awq_marlin"))


@dataclass(frozen=True, order=True)
class Lease:
    boot_id: str
    gpu_uuid: str
    workload: GroupKey  # the table key without its vLLM version: GPU model and workload


def lease_of(run: Loaded) -> Optional[tuple[str, str]]:
    """(boot_id, GPU uuid), or None when the result lacks either (then it pairs with nothing)."""
    p = run.result.provenance
    boot = p.host.boot_id if p.host else None
    uuid = p.gpu.uuid if p.gpu else None
    return (boot, uuid) if boot and uuid else None


def version_key(version: str) -> tuple:
    return tuple(int(x) if x.isdigit() else x for x in re.split(r"[.+-]", version))


def study_runs_by_lease(groups: Sequence[Group]) -> dict[Lease, dict[str, dict[str, list[Loaded]]]]:
    """lease -> vLLM version -> backend label -> the study configuration's runs in that lease (every stack)."""
    out: dict[Lease, dict[str, dict[str, list[Loaded]]]] = {}
    for g in groups:
        for label, _ in ROWS:
            cells = [c for c in [g.cells.get(label), *g.other_stacks.get(label, [])] if c is not None]
            for run in (r for c in cells for r in c.runs):
                lease = lease_of(run)
                if lease is not None:
                    key = Lease(*lease, g.key.without_vllm())
                    out.setdefault(key, {}).setdefault(g.key.vllm, {}).setdefault(label, []).append(run)
    return out


def comparable_leases(groups: Sequence[Group]) -> dict[Lease, dict[str, dict[str, Spread]]]:
    """Leases holding both rows (awq and awq_marlin) for two or more vLLM versions: version -> label -> Spread of
    TTFT and TPOT medians, as {label: (ttft, tpot)}."""
    out = {}
    for lease, versions in sorted(study_runs_by_lease(groups).items()):
        complete = {v: rows for v, rows in versions.items() if all(l in rows for l, _ in ROWS)}
        if len(complete) >= 2:
            out[lease] = {v: {l: _spreads(runs) for l, runs in complete[v].items()}
                          for v in sorted(complete, key=version_key)}
    return out


def _spreads(runs: Sequence[Loaded]) -> tuple[Spread, Spread]:
    return (Spread(tuple(r.result.summary.ttft_ms.median for r in runs)),
            Spread(tuple(r.result.summary.tpot_ms.median for r in runs)))


def _lease_table(versions: dict[str, dict[str, tuple[Spread, Spread]]], published: PublishedWeek1) -> str:
    pub = {c.label: c for c in published.columns}
    has_pub = all(l in pub for l, _ in ROWS)
    headers = ["row"] + [f"vLLM {v} {m}" for v in versions for m in ("TTFT", "TPOT")]
    if has_pub:
        headers += ["published TTFT", "published TPOT"]
    rows = []
    for label, name in ROWS:
        row = [name] + [spread_ms(s.median, s) for v in versions for s in versions[v][label]]
        if has_pub:
            row += [ms(pub[label].ttft_ms), ms(pub[label].tpot_ms)]
        rows.append(row)
    pub_ratios = ((pub[AWQ].ttft_ms / pub[MARLIN].ttft_ms, pub[AWQ].tpot_ms / pub[MARLIN].tpot_ms)
                  if has_pub else (None, None))
    ratio_row = ["awq / awq_marlin"]
    for v in versions:
        for i in (0, 1):
            ratio_row.append(_quotient(versions[v][AWQ][i], versions[v][MARLIN][i], pub_ratios[i]))
    if has_pub:
        ratio_row += [f"{pub_ratios[0]:.1f}×", f"{pub_ratios[1]:.1f}×"]
    rows.append(ratio_row)
    return pipe_table(headers, rows, align="l" + "r" * (len(headers) - 1))


def _version_ratios(versions: dict[str, dict[str, tuple[Spread, Spread]]]) -> str:
    """Each newer version against the oldest, per row and metric; 1 inside the ratio's range is run-to-run spread."""
    names = list(versions)
    base, out = names[0], []
    for v in names[1:]:
        parts = []
        for label, name in ROWS:
            for i, metric in enumerate(("TTFT", "TPOT")):
                parts.append(f"{name} {metric} {_quotient(versions[v][label][i], versions[base][label][i], 1.0)}")
        out.append(f"- vLLM {v} / {base}: " + ", ".join(parts) + " (below 1: the newer version is faster)")
    return "\n".join(out)


def render_same_lease(groups: Sequence[Group], published: PublishedWeek1) -> str:
    out = ["### vLLM versions on the same GPU, same lease", ""]
    leases = comparable_leases(groups)
    if not leases:
        out.append(text("week1.same_lease_none"))
        return "\n".join(out)
    out.append(text("week1.same_lease", version=published.version("vllm") or "?", device=published.device,
                    within=WITHIN_SPREAD))
    for lease, versions in leases.items():
        out += ["", f"#### {lease.workload.title}: GPU {lease.gpu_uuid}, boot {lease.boot_id[:8]}; vLLM "
                    f"{' vs '.join(versions)}", "", _lease_table(versions, published), "", _version_ratios(versions)]
    return "\n".join(out)

"""reports/week1.md: the week-1 TTFT/TPOT table in the seed's own format, then comparison and details."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from kit.report.common import (
    DASH, WITHIN_SPREAD, Cell, Group, Inputs, Loaded, Spread, gb, group_runs, hosts_text, label_order, ms, pipe_table,
    ratio, spread_ms, text, torch_deviation, vllm_version_of,
)
from kit.report.provenance import Footnotes, backend_text, stack_versions, workload_text
from kit.report.conditions import conditions_table
from kit.report.versions import render_same_lease
from kit.report.published import Published, PublishedWeek1, is_same_gpu
from kit.report.vllm_rows import (
    CONFIGURATIONS_NOTE, CONFIGURATIONS_NOTE_PLAIN, clock_check_text, configurations_table, key_comparison,
)
from core.results import BenchResult, harness_overhead_text

TITLE = "# Week 1. Benchmark"


# --------------------------------------------------------------------------- the seed-format block


@dataclass(frozen=True)
class Column:
    label: str
    model: Optional[str]  # None: nothing reproduced for this column
    ttft_ms: Optional[float]
    tpot_ms: Optional[float]
    # Two or more runs: the median above is the median of their medians, and these give the range.
    ttft_spread: Optional[Spread] = None
    tpot_spread: Optional[Spread] = None


@dataclass(frozen=True)
class Block:
    """What the seed's week-1 table + bullets show; reproduced and published data both become one."""

    device: str
    columns: tuple[Column, ...]
    stacks: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]


def render_block(block: Block) -> str:
    """The table, a blank line, the Device / versions bullets: byte for byte the seed's layout."""
    table = pipe_table(
        ["**Backend**", *(c.label for c in block.columns)],
        [
            ["**Model**", *(c.model or DASH for c in block.columns)],
            ["**TTFT**", *(spread_ms(c.ttft_ms, c.ttft_spread) for c in block.columns)],
            ["**TPOT**", *(spread_ms(c.tpot_ms, c.tpot_spread) for c in block.columns)],
        ],
    )
    bullets = [f"- Device: {block.device}"]
    for stack, versions in block.stacks:
        bullets.append(f"- {stack}")
        bullets.extend(f"  - {name} {version}" for name, version in versions)
    return table + "\n\n" + "\n".join(bullets)


def published_block(week1: PublishedWeek1) -> Block:
    return Block(
        device=week1.device,
        columns=tuple(Column(c.label, c.model, c.ttft_ms, c.tpot_ms) for c in week1.columns),
        stacks=tuple((s.name, tuple(tuple(v) for v in s.versions)) for s in week1.stacks),
    )


def _model_cell(result: BenchResult) -> str:
    w = result.workload
    return f"{w.model} (synthetic)" if w.synthetic else w.model


def group_block(group: Group, labels: Sequence[str]) -> Block:
    columns = []
    for label in labels:
        cell = group.cells.get(label)
        if cell is None:
            columns.append(Column(label, None, None, None))
        else:
            ttft, tpot = cell.ttft, cell.tpot
            columns.append(Column(label, _model_cell(cell.newest.result), ttft.median, tpot.median, ttft, tpot))
    stacks = stack_versions([group.latest[l] for l in labels if l in group.latest])
    return Block(group.key.device.title, tuple(columns),
                 tuple((name, tuple(items)) for name, items in stacks))


def _weights(runs: Sequence[Loaded]) -> str:
    kinds = sorted({"synthetic" if r.result.workload.synthetic else "real" for r in runs})
    return " and ".join(kinds) + " weights"


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def stack_words(cell: Cell) -> str:
    """The stack a cell ran on, with its torch deviation from the pins when it has one."""
    words = ", ".join(f"{lib} {version}" for lib, version in cell.key.stack)
    deviation = torch_deviation(cell.newest.result)
    return words + (f" ({deviation}: a stand-in for the pinned torch)" if deviation else "")


def runs_per_cell(group: Group, labels: Sequence[str]) -> Optional[str]:
    """'Runs: vLLM (awq) 2, transformers 4 (hosts not recorded)': cells with several runs, by their hosts."""
    by_hosts: dict[str, list[str]] = {}
    for label in labels:
        cell = group.cells.get(label)
        if cell is not None and len(cell.runs) > 1:
            by_hosts.setdefault(hosts_text(cell.runs), []).append(f"{label} {len(cell.runs)}")
    if not by_hosts:
        return None
    counts = "; ".join(f"{', '.join(cells)} ({hosts})" for hosts, cells in by_hosts.items())
    return (f"Runs per cell: {counts}. A cell of several runs shows the median of their medians (min–max of the run "
            f"medians, runs); Details lists each run")


def cell_words(cell: Cell) -> str:
    return f"TTFT {spread_ms(cell.ttft.median, cell.ttft)}, TPOT {spread_ms(cell.tpot.median, cell.tpot)}" + (
        "" if len(cell.runs) > 1 else " (1 run)")


def render_group(group: Group, labels: Sequence[str]) -> str:
    shown = [group.latest[l] for l in labels if l in group.latest]
    text = render_block(group_block(group, labels))
    text += f"\n- Workload: {group.key.workload_title}, {_weights(shown)}"
    runs_bullet = runs_per_cell(group, labels)
    if runs_bullet:
        text += f"\n- {runs_bullet}"
    for label in labels:
        for other in group.other_stacks.get(label, []):
            text += f"\n- Also measured, not in the cell: {label} on {stack_words(other)}: {cell_words(other)}"
    missing = [l for l in labels if l not in group.cells]
    if missing:
        text += (f"\n\nNothing has been reproduced for {_and(missing)} on {group.key.device.title} with this "
                 f"workload: {'its cells show' if len(missing) == 1 else 'their cells show'} \"{DASH}\".")
    return text


# --------------------------------------------------------------------------- comparison


def comparison_words(run: Loaded, week1: PublishedWeek1) -> str:
    result = run.result
    gpu = result.provenance.gpu
    if result.backend.device == "cpu":
        words = f"CPU run vs the published {week1.device}: not a reproduction"
    elif gpu is None:
        words = f"GPU not recorded, so not comparable with the published {week1.device}: not a reproduction"
    elif is_same_gpu(gpu.name, week1.same_gpu_names):
        words = f"same GPU as published ({gpu.name})"
    else:
        words = f"different GPU ({gpu.name} vs {week1.device}): not a reproduction"
    version = vllm_version_of(result)
    published_version = week1.version("vllm")
    if version and published_version and version != published_version:
        words += f"; vLLM {version}, not the published {published_version}"
    if result.workload.synthetic:
        words += "; synthetic weights"
    return words


def render_comparison(groups: Sequence[Group], labels: Sequence[str], published: PublishedWeek1, plot: str) -> str:
    pub = {c.label: c for c in published.columns}
    out = ["## Reproduced vs published", ""]
    out.append(text("week1.comparison", workload=published.workload, within=WITHIN_SPREAD,
                    device=published.device))
    out.append("")
    if not groups:
        out.append(text("week1.nothing_to_compare"))
        out.append("")
    for g in groups:
        rows = []
        for label in labels:
            cell = g.cells.get(label)
            p = pub.get(label)
            for metric in ("TTFT", "TPOT"):
                p_value = None if p is None else (p.ttft_ms if metric == "TTFT" else p.tpot_ms)
                if cell is None:
                    rows.append([label, metric, DASH, ms(p_value), DASH, "nothing reproduced"])
                    continue
                spread = cell.ttft if metric == "TTFT" else cell.tpot
                shown = spread_ms(spread.median, spread)
                if p_value is None:
                    rows.append([label, metric, shown, DASH, DASH, "not in the published study"])
                    continue
                words = comparison_words(cell.newest, published)
                if spread.contains(p_value):
                    words = f"{WITHIN_SPREAD}; {words}"
                rows.append([label, metric, shown, ms(p_value), ratio(spread.median, p_value), words])
        out += [f"### {g.key.title}", "",
                pipe_table(["Backend", "Metric", "Reproduced", "Published", "Ratio", "Comparison"], rows,
                           align="llrrrl"), ""]
    out += [key_comparison(groups, labels, published), ""]
    out += [render_same_lease(groups, published), ""]
    out.append(f"![Week 1: median TTFT and TPOT per backend, reproduced vs published]({plot})")
    return "\n".join(out)


# --------------------------------------------------------------------------- details


def floor_text(result: BenchResult) -> str:
    r = result.roofline
    if r is None:
        return "not recorded by this run (no roofline inputs in the result)"
    breakdown = ""
    if r.bytes_breakdown:
        breakdown = " (" + ", ".join(f"{k} {gb(v)}" for k, v in sorted(r.bytes_breakdown.items())) + ")"
    floor = r.floor_ms
    if floor is None:
        return (f"{gb(r.bytes_per_decode_step)} read per decode step{breakdown}, but no measured memory "
                f"bandwidth, so no floor")
    tpot = result.summary.tpot_ms.median
    method = f", {r.bandwidth_method}" if r.bandwidth_method else ""
    pct = f"{floor / tpot * 100:.1f}%" if tpot > 0 else "n/a (median TPOT is 0)"
    text = (f"{gb(r.bytes_per_decode_step)} per decode step{breakdown} / {r.bandwidth_gb_s:.1f} GB/s measured"
            f"{method} = {floor:.3f} ms; the median TPOT of {tpot:.3f} ms reaches **{pct}** of that floor")
    if tpot > 0 and floor > tpot:
        text += (" (above 100%: faster than the floor allows, so the byte count or the bandwidth measurement "
                 "is wrong)")
    return text


def _stats_table(result: BenchResult) -> str:
    s = result.summary
    cols = [s.ttft_ms, s.tpot_ms, s.itl_ms, s.e2e_ms]
    rows = [[name, *(f"{getattr(c, attr):.2f}" for c in cols)]
            for name, attr in (("median", "median"), ("p90", "p90"), ("p99", "p99"), ("mean", "mean"),
                               ("std", "std"), ("min", "min"), ("max", "max"))]
    rows.append(["n", *(str(c.n) for c in cols)])
    return pipe_table(["statistic", "TTFT (ms)", "TPOT (ms)", "ITL (ms)", "end-to-end (ms)"], rows, align="lrrrr")


def render_details(groups: Sequence[Group], labels: Sequence[str], notes: Footnotes) -> str:
    out = ["## Details"]
    if not groups:
        out += ["", "Nothing has been reproduced yet: there are no runs to detail."]
        return "\n".join(out)
    for g in groups:
        out += ["", f"### {g.key.title}"]
        for label in labels:
            cell = g.cells.get(label)
            if cell is None:
                out += _configurations(g, label, notes, heading=True)
                out += _other_stacks(g, label, notes)
                continue
            run = cell.newest
            r: BenchResult = run.result  # type: ignore[assignment]
            out += ["", f"#### {label}{notes.ref(run)}", ""]
            if len(cell.runs) > 1:
                out += [f"The newest of the cell's {len(cell.runs)} runs, in full (each run is listed below):", ""]
            out += [_stats_table(r), ""]
            out.append(f"- Workload: {workload_text(r)}")
            out.append(f"- Backend: {backend_text(r)}")
            out.append(f"- Memory-bandwidth floor: {floor_text(r)}")
            if r.backend.name == "transformers":
                overhead = harness_overhead_text(r.samples.instrumented_generate_ms, r.samples.bare_generate_ms)
                out.append("- Harness overhead: " + (overhead or "not measured by this run (its result has no bare "
                                                     "generate() baseline, `samples.bare_generate_ms`)"))
            engine_check = clock_check_text(r)
            if engine_check:
                out.append(f"- Client vs engine clock: {engine_check}")
            for note in r.notes:
                out.append(f"- Note: {note}")
            out += _cell_runs(cell, notes)
            out += _configurations(g, label, notes, heading=False)
            out += _other_stacks(g, label, notes)
        out += _run_conditions(g)
    return "\n".join(out)


# --------------------------------------------------------------------------- run conditions (issue 17 item 4)


def runs_per_configuration(g: Group) -> list[tuple[str, list[Loaded]]]:
    """(title, runs) of every configuration of the group with two or more GPU runs: per backend label, the study
    configuration's runs (the cell's), then each variant's."""
    out = []
    for label in g.labels:
        study = list(g.cells[label].runs) if label in g.cells else []
        configurations = [(label, study)] + [(f"{label}, {', '.join(variant)}", runs)
                                             for variant, runs in g.variants.get(label, {}).items()]
        out += [(title, runs) for title, runs in configurations
                if len(runs) >= 2 and runs[0].result.backend.device == "cuda"]
    return out


def _run_conditions(g: Group) -> list[str]:
    """Per configuration run more than once on a GPU: its runs side by side with what moves a launch-bound row."""
    out = []
    for title, runs in runs_per_configuration(g):
        out += ["", f"#### {title}: run conditions", "",
                text("week1.run_conditions", n=len(runs)), "",
                conditions_table([run.result for run in runs])]  # type: ignore[misc]
    return out


def _configurations(g: Group, label: str, notes: Footnotes, heading: bool) -> list[str]:
    """A vLLM row's configurations and TTFT stages (with engine timestamps, or with variants to compare)."""
    has_engine = any(r.result.samples.engine for r in [*g.latest.values(), *(
        v for runs in g.variants.get(label, {}).values() for v in runs)] if r.result.backend.label == label)
    if not has_engine and label not in g.variants:
        return []
    table = configurations_table(g, label, notes.ref)
    if table is None:
        return []
    out = [""]
    if heading:
        out += [f"#### {label}: variant configurations only", "",
                f"No run of the study configuration for {label} in this table, so its cell shows \"{DASH}\".", ""]
    if has_engine:
        out += [f"Configurations measured for {label}, and where the time to first token goes:", "", table, "",
                CONFIGURATIONS_NOTE]
    else:
        out += [f"Configurations measured for {label}:", "", table, "", CONFIGURATIONS_NOTE_PLAIN]
    return out


def run_line(run: Loaded, notes: Footnotes) -> str:
    r = run.result
    host = r.provenance.host
    where = (f"host {host.hostname or 'not named'}" + (f", boot {host.boot_id[:8]}" if host.boot_id else "")
             if host else "host not recorded")
    return (f"`{run.name}` (created {r.created_utc}, {where}): TTFT {ms(r.summary.ttft_ms.median)}, "
            f"TPOT {ms(r.summary.tpot_ms.median)}{notes.ref(run)}")


def _cell_runs(cell: Cell, notes: Footnotes) -> list[str]:
    """Every run that makes up a cell of two or more runs: each counts, none supersedes another."""
    if len(cell.runs) < 2:
        return []
    return [f"- Runs in this cell ({cell.runs_text}), newest first; the cell is the median of their medians:",
            *(f"  - {run_line(run, notes)}" for run in cell.runs)]


def _other_stacks(g: Group, label: str, notes: Footnotes) -> list[str]:
    """The study configuration's runs on a stack other than the cell's (e.g. a stand-in torch)."""
    out = []
    for other in g.other_stacks.get(label, []):
        out += [f"- Also measured on another stack, not in the cell: {stack_words(other)}: {cell_words(other)}:",
                *(f"  - {run_line(run, notes)}" for run in other.runs)]
    return out


def how_built(inputs: Inputs) -> str:
    n = len(inputs.bench)
    lines = [text("week1.how_built", within=WITHIN_SPREAD, dash=DASH),
             f"- Inputs: {n} benchmark result file{'s' if n != 1 else ''} in `{inputs.results_dir_name}/`."]
    for s in inputs.skipped:
        lines.append(f"- Skipped: {s}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the whole report


def render_week1(inputs: Inputs, published: Published, plot: str = "week1.png") -> str:
    groups = group_runs(inputs.bench)
    labels = label_order({*(c.label for c in published.week1.columns),
                          *(l for g in groups for l in g.labels)})
    notes = Footnotes("w1-")
    parts = [TITLE, ""]
    if not groups:
        parts.append(text("week1.nothing_reproduced", device=published.week1.device))
        parts += ["", render_block(published_block(published.week1))]
    else:
        for i, g in enumerate(groups):
            if i:
                parts += ["", f"## Also measured: {g.key.title}", ""]
            parts.append(render_group(g, labels))
        parts += ["", f"## Published ({published.week1.device})", "",
                  render_block(published_block(published.week1)), "",
                  f"Workload of the published study: {published.week1.workload}."]
    parts += ["", render_comparison(groups, labels, published.week1, plot)]
    parts += ["", render_details(groups, labels, notes)]
    parts += ["", text("week1.definitions"), "", how_built(inputs)]
    if notes:
        parts += ["", notes.render()]
    return "\n".join(parts) + "\n"

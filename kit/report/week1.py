"""reports/week1.md: the week-1 TTFT/TPOT table in the seed's own format, then comparison and details."""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from core.results import BenchResult, GPUState, harness_overhead_text
from kit.report.common import (
    DASH, METRICS, STACK_LIBRARIES, WITHIN_SPREAD, Cell, Footnotes, Group, Inputs, Loaded, backend_text, created_key,
    gb, group_runs, hosts_text, label_order, ms, pipe_table, plural, python_version, ratio, spread_ms, stack_of,
    stack_words, text, torch_deviation, vllm_version_of, workload_text,
)
from kit.report.published import Published, PublishedWeek1, is_same_gpu
from kit.report.vllm_rows import clock_check_text, configurations_table, key_comparison, render_same_lease

TITLE = "# Week 1. Benchmark"

def render_block(device: str, columns: Sequence[tuple[str, str, str, str]],
                 stacks: Sequence[tuple[str, Sequence[tuple[str, str]]]]) -> str:
    """The table of columns (label, model, TTFT cell, TPOT cell), a blank line, the Device / versions bullets: byte
    for byte the seed's layout."""
    labels, *rows = zip(*columns)
    table = pipe_table(["**Backend**", *labels], [[name, *row] for name, row in zip(
        ("**Model**", "**TTFT**", "**TPOT**"), rows)])
    bullets = [f"- Device: {device}"]
    for stack, versions in stacks:
        bullets.append(f"- {stack}")
        bullets.extend(f"  - {name} {version}" for name, version in versions)
    return table + "\n\n" + "\n".join(bullets)


def published_block(week1: PublishedWeek1) -> str:
    return render_block(week1.device, [(c.label, c.model, ms(c.ttft_ms), ms(c.tpot_ms)) for c in week1.columns],
                        [(s.name, s.versions) for s in week1.stacks])


def _joined(runs: Sequence[Loaded], get: Callable[[Loaded], str]) -> str:
    values = {r.result.backend.label: get(r) for r in runs}
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    return "; ".join(f"{values[l]} ({l})" for l in label_order(values))


def stack_versions(runs: Sequence[Loaded]) -> list[tuple[str, list[tuple[str, str]]]]:
    """Versions bullets for the runs shown in one table, in the seed's shape: per stack, per library."""
    out = []
    for stack, title in (("vllm", "vLLM"), ("transformers", "transformers")):
        if stack_runs := [r for r in runs if r.result.backend.name == stack]:
            items = [(lib, _joined(stack_runs, lambda r, lib=lib: dict(stack_of(r.result))[lib]))
                     for lib in STACK_LIBRARIES[stack]]
            items.append(("Python", _joined(stack_runs, lambda r: python_version(r.result.provenance.python))))
            out.append((title, items))
    return out


def other_stack_words(cell: Cell) -> str:
    """The stack a cell of another stack ran on (with its torch deviation from the pins), then its TTFT and TPOT."""
    deviation = torch_deviation(cell.newest.result)
    ttft, tpot = (spread_ms(cell.spread(m)) for m in METRICS)
    return (stack_words(cell.newest.result) + (f" ({deviation}: a stand-in for the pinned torch)" if deviation else "")
            + f": TTFT {ttft}, TPOT {tpot}" + ("" if len(cell.runs) > 1 else " (1 run)"))


def render_group(group: Group, labels: Sequence[str]) -> str:
    """One reproduced table in the seed's format, then what the seed's bullets do not say."""
    columns: list[tuple[str, ...]] = []
    for label in labels:
        cell = group.cells.get(label)
        if cell is None:
            columns.append((label, DASH, DASH, DASH))
        else:
            w = cell.newest.result.workload
            columns.append((label, f"{w.model} (synthetic)" if w.synthetic else w.model,
                            *(spread_ms(cell.spread(m)) for m in METRICS)))
    shown = [group.cells[l].newest for l in labels if l in group.cells]
    weights = sorted({"synthetic" if r.result.workload.synthetic else "real" for r in shown})
    out = [render_block(group.key.device, columns, stack_versions(shown)),
           f"- Workload: {group.key.workload_title}, {' and '.join(weights)} weights"]
    by_hosts: dict[str, list[str]] = {}  # 'vLLM (awq) 2, transformers 4 (hosts not recorded)': cells of several runs
    for label, cell in group.cells.items():
        if len(cell.runs) > 1:
            by_hosts.setdefault(hosts_text(cell.runs), []).append(f"{label} {len(cell.runs)}")
    if by_hosts:
        counts = "; ".join(f"{', '.join(cells)} ({hosts})" for hosts, cells in by_hosts.items())
        out.append(f"- Runs per cell: {counts}. A cell of several runs shows the median of their medians (min–max of "
                   "the run medians, runs); Details lists each run")
    out += [f"- Also measured, not in the cell: {label} on {other_stack_words(other)}"
            for label in labels for other in group.other_stacks.get(label, [])]
    if missing := [l for l in labels if l not in group.cells]:
        names = missing[0] if len(missing) == 1 else ", ".join(missing[:-1]) + " and " + missing[-1]
        out.append(f"\nNothing has been reproduced for {names} on {group.key.device} with this workload: "
                   f"{'its cells show' if len(missing) == 1 else 'their cells show'} \"{DASH}\".")
    return "\n".join(out)


def comparison_words(run: Loaded, week1: PublishedWeek1) -> str:
    result, gpu = run.result, run.result.provenance.gpu
    if result.backend.device == "cpu":
        words = f"CPU run vs the published {week1.device}: not a reproduction"
    elif gpu is None:
        words = f"GPU not recorded, so not comparable with the published {week1.device}: not a reproduction"
    elif is_same_gpu(gpu.name, week1.same_gpu_names):
        words = f"same GPU as published ({gpu.name})"
    else:
        words = f"different GPU ({gpu.name} vs {week1.device}): not a reproduction"
    version, published_version = vllm_version_of(result), week1.version("vllm")
    if version and published_version and version != published_version:
        words += f"; vLLM {version}, not the published {published_version}"
    return words + ("; synthetic weights" if result.workload.synthetic else "")


def _comparison_rows(g: Group, labels: Sequence[str], published: PublishedWeek1) -> list[list[str]]:
    pub = {c.label: c for c in published.columns}
    rows = []
    for label in labels:
        cell, p = g.cells.get(label), pub.get(label)
        for metric, field in zip(("TTFT", "TPOT"), METRICS):
            p_value = None if p is None else getattr(p, field)
            if cell is None:
                rows.append([label, metric, DASH, ms(p_value), DASH, "nothing reproduced"])
            elif p_value is None:
                rows.append([label, metric, spread_ms(cell.spread(field)), DASH, DASH, "not in the published study"])
            else:
                spread, words = cell.spread(field), comparison_words(cell.newest, published)
                rows.append([label, metric, spread_ms(spread), ms(p_value), ratio(spread.median, p_value),
                             f"{WITHIN_SPREAD}; {words}" if spread.contains(p_value) else words])
    return rows


def render_comparison(groups: Sequence[Group], labels: Sequence[str], published: PublishedWeek1) -> str:
    out = ["## Reproduced vs published", "",
           text("week1.comparison", workload=published.workload, within=WITHIN_SPREAD, device=published.device), ""]
    if not groups:
        out += [text("week1.nothing_to_compare"), ""]
    for g in groups:
        out += [f"### {g.key.title}", "",
                pipe_table(["Backend", "Metric", "Reproduced", "Published", "Ratio", "Comparison"],
                           _comparison_rows(g, labels, published), align="llrrrl"), ""]
    out += [key_comparison(groups, labels, published), "", render_same_lease(groups, published), "",
            "![Week 1: median TTFT and TPOT per backend, reproduced vs published](week1.png)"]
    return "\n".join(out)


def floor_text(result: BenchResult) -> str:
    r = result.roofline
    if r is None:
        return "not recorded by this run (no roofline inputs in the result)"
    breakdown = (" (" + ", ".join(f"{k} {gb(v)}" for k, v in sorted(r.bytes_breakdown.items())) + ")"
                 if r.bytes_breakdown else "")
    if (floor := r.floor_ms) is None:
        return (f"{gb(r.bytes_per_decode_step)} read per decode step{breakdown}, but no measured memory "
                f"bandwidth, so no floor")
    tpot = result.summary.tpot_ms.median
    method = f", {r.bandwidth_method}" if r.bandwidth_method else ""
    pct = f"{floor / tpot * 100:.1f}%" if tpot > 0 else "n/a (median TPOT is 0)"
    out = (f"{gb(r.bytes_per_decode_step)} per decode step{breakdown} / {r.bandwidth_gb_s:.1f} GB/s measured"
           f"{method} = {floor:.3f} ms; the median TPOT of {tpot:.3f} ms reaches **{pct}** of that floor")
    if tpot > 0 and floor > tpot:
        out += " (above 100%: faster than the floor allows, so the byte count or the bandwidth measurement is wrong)"
    return out


def _stats_table(result: BenchResult) -> str:
    cols = [getattr(result.summary, m) for m in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")]
    rows = [[attr, *(f"{getattr(c, attr):.2f}" for c in cols)]
            for attr in ("median", "p90", "p99", "mean", "std", "min", "max")]
    rows.append(["n", *(str(c.n) for c in cols)])
    return pipe_table(["statistic", "TTFT (ms)", "TPOT (ms)", "ITL (ms)", "end-to-end (ms)"], rows, align="lrrrr")


def _run_details(cell: Cell, label: str, notes: Footnotes) -> list[str]:
    """The newest run of a cell in full, then every run that makes up the cell."""
    run = cell.newest
    r: BenchResult = run.result  # type: ignore[assignment]
    out = ["", f"#### {label}{notes.ref(run)}", ""]
    if len(cell.runs) > 1:
        out += [f"The newest of the cell's {len(cell.runs)} runs, in full (each run is listed below):", ""]
    out += [_stats_table(r), "", f"- Workload: {workload_text(r)}", f"- Backend: {backend_text(r)}",
            f"- Memory-bandwidth floor: {floor_text(r)}"]
    if r.backend.name == "transformers":
        overhead = harness_overhead_text(r.samples.instrumented_generate_ms, r.samples.bare_generate_ms)
        out.append("- Harness overhead: " + (overhead or "not measured by this run (its result has no bare "
                                             "generate() baseline, `samples.bare_generate_ms`)"))
    if engine_check := clock_check_text(r):
        out.append(f"- Client vs engine clock: {engine_check}")
    out += [f"- Note: {note}" for note in r.notes]
    if len(cell.runs) > 1:  # each run counts, none supersedes another
        out += [f"- Runs in this cell ({plural(len(cell.runs), 'run')}, {hosts_text(cell.runs)}), newest first; the "
                "cell is the median of their medians:", *(f"  - {run_line(run, notes)}" for run in cell.runs)]
    return out


def render_details(groups: Sequence[Group], labels: Sequence[str], notes: Footnotes) -> str:
    out = ["## Details"]
    if not groups:
        return "\n".join(out + ["", "Nothing has been reproduced yet: there are no runs to detail."])
    for g in groups:
        out += ["", f"### {g.key.title}"]
        for label in labels:
            cell = g.cells.get(label)
            if cell is not None:
                out += _run_details(cell, label, notes)
            out += _configurations(g, label, notes, heading=cell is None)
            for other in g.other_stacks.get(label, []):  # the study configuration on another stack
                out += [f"- Also measured on another stack, not in the cell: {other_stack_words(other)}:",
                        *(f"  - {run_line(run, notes)}" for run in other.runs)]
        for title, runs in runs_per_configuration(g):
            out += ["", f"#### {title}: run conditions", "", text("week1.run_conditions", n=len(runs)), "",
                    conditions_table([run.result for run in runs])]  # type: ignore[misc]
    return "\n".join(out)


NOT_RECORDED = "not recorded"
SHORT_ID = 8  # enough characters of a boot id or GPU uuid to tell two apart in a column


def _short(value: Optional[str]) -> str:
    if not value:
        return DASH
    return value[:SHORT_ID + len("GPU-")] if value.startswith("GPU-") else value[:SHORT_ID]


def _start_end(start: Optional[GPUState], end: Optional[GPUState], field: str) -> str:
    """'start → end', one value when both agree, '—' for a side not read."""
    a, b = (None if state is None else getattr(state, field) for state in (start, end))
    if a is None and b is None:
        return DASH
    return f"{a:g}" if a == b else f"{DASH if a is None else f'{a:g}'} → {DASH if b is None else f'{b:g}'}"


ROWS = ("Created (UTC)", "Host CPU", "Logical CPUs", "Hostname", "Boot id", "GPU uuid",
        "SM clock, MHz (start → end)", "Memory clock, MHz (start → end)", "Power limit, W",
        "Empty-kernel launch, µs", "CUDA graph replay, µs", "TTFT median", "TPOT median")


def _column(r: BenchResult) -> list[str]:
    h, c = r.provenance.host, r.conditions
    host = [NOT_RECORDED] * 4 if h is None else [*(DASH if v is None else str(v) for v in (
        h.cpu_model, h.cpu_cores, h.hostname)), _short(h.boot_id)]
    uuid = r.provenance.gpu.uuid if r.provenance.gpu else None
    # NOT_RECORDED: made before the kit recorded the card's uuid (with the host)
    uuid_cell = NOT_RECORDED if uuid is None and h is None else _short(uuid)
    if c is None:
        gpu = [NOT_RECORDED] * 5
    else:
        probe = c.launch_probe
        gpu = [*(_start_end(c.gpu_start, c.gpu_end, f) for f in ("sm_clock_mhz", "mem_clock_mhz", "power_limit_w")),
               DASH if probe is None else f"{probe.empty_kernel_launch_us:.2f}",
               DASH if probe is None or probe.graph_replay_us is None else f"{probe.graph_replay_us:.2f}"]
    return [r.created_utc, *host, uuid_cell, *gpu, ms(r.summary.ttft_ms.median), ms(r.summary.tpot_ms.median)]


def conditions_table(results: Sequence[BenchResult]) -> str:
    """What moved a launch-bound row: host and GPU conditions (CPU, card, clocks, power limit, launch probe) of several
    runs of ONE configuration, one column per run (oldest first, headed by its run id). "—": not recorded by the run;
    "not recorded": a result from before the kit recorded it."""
    runs = sorted(results, key=lambda r: (created_key(r.created_utc), r.run_id))
    return pipe_table(["Run", *(f"`{r.run_id}`" for r in runs)], zip(ROWS, *map(_column, runs)))


def runs_per_configuration(g: Group) -> list[tuple[str, list[Loaded]]]:
    """(title, runs) of every configuration of the group with two or more GPU runs: per backend label, the study
    configuration's runs (the cell's), then each variant's. Their run conditions are shown side by side."""
    return [(", ".join([label, *variant]), runs) for label in g.labels for variant, runs in g.configurations(label)
            if len(runs) >= 2 and runs[0].result.backend.device == "cuda"]


def _configurations(g: Group, label: str, notes: Footnotes, heading: bool) -> list[str]:
    """A vLLM row's configurations and TTFT stages (with engine timestamps, or with variants to compare)."""
    study = [g.cells[label].newest] if label in g.cells else []
    has_engine = any(r.result.samples.engine for r in study + [r for runs in g.variants.get(label, {}).values()
                                                               for r in runs])
    if not (has_engine or label in g.variants):
        return []
    out = [""]
    if heading:
        out += [f"#### {label}: variant configurations only", "",
                f"No run of the study configuration for {label} in this table, so its cell shows \"{DASH}\".", ""]
    stages = ", and where the time to first token goes" if has_engine else ""
    return out + [f"Configurations measured for {label}{stages}:", "", configurations_table(g, label, notes.ref), "",
                  text("week1.configurations" if has_engine else "week1.configurations_plain")]


def run_line(run: Loaded, notes: Footnotes) -> str:
    r, host = run.result, run.result.provenance.host
    where = (f"host {host.hostname or 'not named'}" + (f", boot {host.boot_id[:8]}" if host.boot_id else "")
             if host else "host not recorded")
    return (f"`{run.name}` (created {r.created_utc}, {where}): TTFT {ms(r.summary.ttft_ms.median)}, "
            f"TPOT {ms(r.summary.tpot_ms.median)}{notes.ref(run)}")


def _tables(inputs: Inputs, published: Published) -> tuple[list[Group], list[str]]:
    """The reproduced tables and the backend labels they all show (the published ones and every reproduced one)."""
    groups = group_runs(inputs.bench)
    return groups, label_order({*(c.label for c in published.week1.columns), *(l for g in groups for l in g.labels)})


def render_week1(inputs: Inputs, published: Published) -> str:
    groups, labels = _tables(inputs, published)
    notes = Footnotes("w1-")
    parts = [TITLE, ""]
    if not groups:
        parts += [text("week1.nothing_reproduced", device=published.week1.device), "",
                  published_block(published.week1)]
    else:
        for i, g in enumerate(groups):
            if i:
                parts += ["", f"## Also measured: {g.key.title}", ""]
            parts.append(render_group(g, labels))
        parts += ["", f"## Published ({published.week1.device})", "", published_block(published.week1), "",
                  f"Workload of the published study: {published.week1.workload}."]
    parts += ["", render_comparison(groups, labels, published.week1),
              "", render_details(groups, labels, notes),
              "", text("week1.definitions"), "",
              text("week1.how_built", within=WITHIN_SPREAD, dash=DASH), *inputs.lines("benchmark", inputs.bench)]
    return "\n".join(parts + notes.lines()) + "\n"


def plot_args(inputs: Inputs, published: Published) -> list[Any]:
    """plots.week1_png's labels, series and note: (name, TTFT per label, TPOT per label) per series, published first,
    then each table's cell values (None: not measured)."""
    pub = published.week1
    groups, labels = _tables(inputs, published)
    by_label = {c.label: c for c in pub.columns}
    series: list[Any] = [(f"published, {pub.device}",
                          *([getattr(by_label[l], m) if l in by_label else None for l in labels] for m in METRICS))]
    for g in groups:
        k = g.key
        name = f"reproduced, {k.device}, in {k.input_len} / out {k.output_len} tokens" + (
            f", batch {k.batch_size}" if k.batch_size != 1 else "") + (f", vLLM {k.vllm}" if k.vllm else "")
        series.append((name, *([g.cells[l].spread(m).median if l in g.cells else None for l in labels]
                               for m in METRICS)))
    return [labels, series, None if len(series) > 1 else "nothing reproduced yet: published numbers only"]

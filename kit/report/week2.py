"""reports/week2.md: profiler tables in the seed's format, one block per reproduced phase, and the published one."""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

from core.results import ProfilePhase, ProfileResult
from kit.report.common import (
    Footnotes, GroupKey, Inputs, Loaded, backend_text, group_key, library_version, newest_first, stack_words, text,
    torch_deviation, version_key, workload_text,
)
from kit.report.published import Published, PublishedWeek2, is_same_gpu

TITLE = "# Week 2. Profiling"
PHASE_ORDER = ("cold", "warm", "decode")
# CUPTI's own overhead, not model work (FIELD-NOTES): kept in the tables, left out of the plot.
NOT_MODEL_WORK = ("Unrecognized",)
TOTAL_PREFIXES = ("Self CPU time total", "Self CUDA time total", "Self XPU time total", "Self MTIA time total",
                  "Self PrivateUse1 time total", "Self device time total")


def split_totals(table: str) -> str:
    """The table text without the trailing 'Self ... time total' lines torch's key_averages().table() ends with, if
    stored (they are rendered as bullets instead); everything else verbatim."""
    lines = table.rstrip("\n").split("\n")
    while lines and (not lines[-1].strip() or lines[-1].strip().lstrip("- ").startswith(TOTAL_PREFIXES)):
        lines.pop()
    return "\n".join(lines)


def render_block(device: str, table: str, totals: Sequence[str],
                 before: Sequence[str] = (), after: Sequence[str] = ()) -> str:
    """'- Device: …', the profiler table verbatim, the totals lines as bullets: the seed's block, byte for byte, but
    for the ```text fence (bare, its dashes would become a markdown rule or list and its columns collapse)."""
    lines = [f"- Device: {device}", *before, "```text", split_totals(table), "```"]
    lines += [t if t.startswith("- ") else f"- {t.strip()}" for t in totals]
    return "\n".join([*lines, *after])


def published_block(week2: PublishedWeek2) -> str:
    return render_block(week2.device, week2.table, week2.totals)


def ordered_phases(result: ProfileResult) -> list[ProfilePhase]:
    return sorted(result.phases, key=lambda p: (PHASE_ORDER.index(p.label) if p.label in PHASE_ORDER else 99,
                                                p.label))


class ProfileGroup(NamedTuple):
    """Profile runs of one GPU, workload, backend and torch version (the torch that ran), newest first."""

    key: GroupKey
    label: str
    torch: str
    runs: tuple[Loaded, ...]

    @property
    def shown(self) -> Loaded:
        return self.runs[0]


def profile_groups(runs: Sequence[Loaded]) -> list[ProfileGroup]:
    """Per GPU, workload, backend and the torch version that ran (provenance.libraries["torch"]): its runs. A
    profile on the study's torch and one on a stand-in torch are shown side by side, neither replacing the other;
    the study's pinned torch (no deviation) first, then the others in version order."""
    by_key: dict[tuple[GroupKey, str, str], list[Loaded]] = {}
    for run in runs:
        torch = library_version(run.result.provenance.libraries, "torch") or "not recorded"
        by_key.setdefault((group_key(run.result), run.result.backend.label, torch), []).append(run)
    groups = [ProfileGroup(k, label, torch, tuple(newest_first(v))) for (k, label, torch), v in by_key.items()]
    return sorted(groups, key=lambda g: (g.key, g.label, torch_deviation(g.shown.result) is not None,
                                         version_key(g.torch)))


def stack_line(result: ProfileResult) -> str:
    """The stack a profile ran on and its deviations from the stack's pins."""
    deviation = torch_deviation(result)
    pins = (f"; deviation from the pins: {deviation} (a stand-in for the study's torch)" if deviation else
            f" ({'on the pinned versions' if result.provenance.pins else 'pins not recorded'})")
    return f"- Stack: {stack_words(result)}{pins}"


def _device_words(result: ProfileResult, week2: PublishedWeek2) -> str:
    if result.backend.device == "cpu":
        return f"a CPU run: not comparable with the published {week2.device} table"
    gpu = result.provenance.gpu
    if gpu and is_same_gpu(gpu.name, week2.same_gpu_names):
        return f"the published GPU ({week2.device})"
    name = gpu.name if gpu else "GPU not recorded"
    return f"a different GPU ({name} vs {week2.device}): not a reproduction of the published table"


def render_week2(inputs: Inputs, published: Published) -> str:
    week2 = published.week2
    groups = profile_groups(inputs.profile)
    notes = Footnotes("w2-")
    parts = [TITLE]
    phases = [(g, phase) for g in groups for phase in ordered_phases(g.shown.result)]  # type: ignore[arg-type]
    for i, (g, phase) in enumerate(phases):
        if i:
            parts += ["", f"## {g.key.device}: {phase.label} phase ({g.label}, torch {g.torch}, "
                          f"{g.key.workload_title})", ""]
        after = [f"- Diagnosis: {phase.diagnosis or 'none recorded by the profiler script'}",
                 *([f"- AWQ kernel path: {phase.awq_kernel_path}"] if phase.awq_kernel_path else []),
                 *([f"- Wall time of the profiled phase: {phase.wall_ms:.2f} ms"] if phase.wall_ms is not None else []),
                 *([f"- Trace: `{phase.trace_file}`"] if phase.trace_file else []),
                 f"- Result: `{g.shown.name}`{notes.ref(g.shown)}"]
        parts.append(render_block(g.key.device, phase.table, phase.totals,
                                  [f"- Phase: {phase.label} ({phase.description})", stack_line(g.shown.result)], after))
    parts += ["", f"## Published ({week2.device})" if phases else text(
        "week2.nothing_reproduced", phases=" with profiled phases" if groups else "", device=week2.device),
              "", published_block(week2)]
    parts += ["", f"The published table is {week2.what}.", "", text("week2.top_operators")]
    if groups:
        parts += ["", "## Runs"]
    for g in groups:
        run = g.shown
        result: ProfileResult = run.result  # type: ignore[assignment]
        parts += ["", f"### {g.key.device}, {g.key.workload_title}, {g.label}, torch {g.torch}{notes.ref(run)}", "",
                  f"- Result: `{run.name}`, phases: {', '.join(p.label for p in ordered_phases(result)) or 'none'}",
                  f"- Device: {_device_words(result, week2)}", f"- Workload: {workload_text(result)}",
                  f"- Backend: {backend_text(result)}", stack_line(result), *(f"- Note: {n}" for n in result.notes)]
        parts += [f"- Earlier run of the same GPU, workload and torch (its phases are not shown): "
                  f"`{old.name}` (created {old.result.created_utc}){notes.ref(old)}" for old in g.runs[1:]]
    parts += ["", text("week2.how_built"), *inputs.lines("profile", inputs.profile)]
    return "\n".join(parts + notes.lines()) + "\n"


def plot_args(inputs: Inputs, published: Published, n: int = 8) -> list[Any]:
    """plots.week2_png's series and note: (title, column, [(op, ms)]) per plotted block, published first, then each
    reproduced phase."""
    week2 = published.week2
    series = [(f"Published: {week2.device}", week2.top_ops_column, list(week2.top_ops[:n]))]
    for g in profile_groups(inputs.profile):
        for phase in ordered_phases(g.shown.result):  # type: ignore[arg-type]
            device = any(r.self_device_us is not None for r in phase.rows)  # else a CPU run: self CPU time
            ops = [(r.name, ((r.self_device_us or 0.0) if device else r.self_cpu_us) / 1e3) for r in phase.rows
                   if r.name not in NOT_MODEL_WORK]
            series.append((f"{g.key.device}, {phase.label} ({g.key.input_len} in, torch {g.torch})",
                           "self device time" if device else "self CPU time",
                           sorted(ops, key=lambda kv: (-kv[1], kv[0]))[:n]))
    return [series, None if len(series) > 1 else "nothing reproduced yet: published table only"]

"""Shared pieces of report assembly: loading results/, grouping runs, markdown helpers, what a report prints about a
run (its provenance footnote, workload and backend lines). Pure functions of their inputs: no clocks, no absolute
paths in the output, fixed orderings."""
from __future__ import annotations

import re
import statistics
import sys
from dataclasses import dataclass, field, replace
from functools import partial
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence
from unittest import mock

import tabulate

from core.errors import KitError
from core.results import BenchResult, NotAResultFile, Result, ResultFileError, load_result

# The seed's column order; other labels follow, sorted.
KNOWN_LABELS = ("vLLM (awq)", "vLLM (awq_marlin)", "transformers")
DASH = "—"  # a cell with no reproduced run
WITHIN_SPREAD = "within run-to-run spread"
METRICS = ("ttft_ms", "tpot_ms")

# Libraries shown in the versions bullets, per stack (the seed's order); Python is added last.
STACK_LIBRARIES = {"vllm": ("torch", "vllm"), "transformers": ("torch", "autoawq", "transformers")}


_PARTS = re.split(r"^<!-- ([\w.]+) -->$", Path(__file__).with_name("text.md").read_text(encoding="utf-8"), flags=re.M)
TEXT = {name: body.strip("\n") for name, body in zip(_PARTS[1::2], _PARTS[2::2])}  # text.md's sections by name


def text(name: str, **values: object) -> str:
    """A section of kit/report/text.md with its {placeholders} filled."""
    return TEXT[name].format(**values)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _cell(value: object) -> str:
    # Stripped here: tabulate strips too, but whether it can be told not to differs between its versions.
    return str(value).replace("|", "\\|").replace("\n", " ").strip()


def pipe_table(headers: Sequence[object], rows: Iterable[Sequence[object]], align: Optional[str] = None) -> str:
    """A markdown pipe table laid out exactly like the seed's week-1 table; align: 'l' or 'r' per column (default
    all left). tabulate's globals, set for the call only: columns as wide as their widest cell, widths in code points
    even when wcwidth is installed (the bytes must not depend on what happens to be installed)."""
    head = [_cell(h) for h in headers]
    body = [[_cell(c) for c in r] for r in rows]
    if not body or any(len(r) != len(head) for r in body):
        raise ValueError("a table needs at least one row, and every row one cell per header")
    colalign = ["right" if a == "r" else "left" for a in (align or "l" * len(head))]
    with mock.patch.multiple(tabulate, MIN_PADDING=0, WIDE_CHARS_MODE=False):
        return tabulate.tabulate(body, headers=head, tablefmt="pipe", colalign=colalign, disable_numparse=True)


def ms(value: Optional[float]) -> str:
    """The seed's cell format: 51.78ms."""
    return DASH if value is None else f"{value:.2f}ms"


def ratio(reproduced: float, published: float) -> str:
    return f"{reproduced / published:.2f}×"


def spread_ms(spread: Spread) -> str:
    """A cell: the plain median for one run; with more, the median of the run medians, their range and count."""
    return ms(spread.median) + (f" ({spread.lo:.2f}–{spread.hi:.2f}ms, {len(spread.values)} runs)"
                                if spread.measured else "")


def gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.3f} GB"


@dataclass(frozen=True)
class Loaded:
    name: str  # file name inside results/ (reports never show absolute paths)
    result: Result


@dataclass
class Inputs:
    bench: list[Loaded] = field(default_factory=list)
    profile: list[Loaded] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one line each: "<name>: why"
    results_dir_name: str = "results"

    def lines(self, kind: str, runs: Sequence[Loaded]) -> list[str]:
        """The 'How this report is built' bullets on the inputs."""
        return [f"- Inputs: {plural(len(runs), kind + ' result file')} in `{self.results_dir_name}/`.",
                *(f"- Skipped: {s}" for s in self.skipped)]


_stderr_note = partial(print, file=sys.stderr)


def load_inputs(results_dir: Path, note: Callable[[str], None] = _stderr_note) -> Inputs:
    """Every results file in results_dir, sorted by name. Non-results are skipped with a one-line note, hidden files
    (an atomic write in progress) ignored; a broken result file raises KitError with core.results' paragraph."""
    results_dir = Path(results_dir)
    inputs = Inputs(results_dir_name=results_dir.name or str(results_dir))
    if not results_dir.exists():
        # A fresh clone has no results/ (git keeps no empty folders): the same report as an empty folder.
        note(f"report: {results_dir} does not exist yet; rendering the published data only")
        return inputs
    if not results_dir.is_dir():
        raise KitError(f"{results_dir}: expected the results folder, found a file. Pass --results-dir with a folder.")
    try:
        entries = sorted(results_dir.iterdir(), key=lambda p: p.name)
    except OSError as e:
        raise KitError(f"{results_dir}: the results folder cannot be listed ({e}). Check its permissions.") from e
    for path in (p for p in entries if not p.name.startswith(".")):
        try:
            result = load_result(path) if path.suffix == ".json" else None
        except NotAResultFile:
            result = None
        except ResultFileError as e:
            raise KitError(f"{e} Nothing was written to the reports folder.") from e
        if result is None:
            why = ("JSON that is not a kit result (no \"format\": \"awq-kit-result\")" if path.suffix == ".json" else
                   "a folder" if path.is_dir() else "not a .json file")
            inputs.skipped.append(f"{path.name}: {why}")
            note(f"report: skipped {path} ({why})")
        else:
            (inputs.bench if isinstance(result, BenchResult) else inputs.profile).append(Loaded(path.name, result))
    return inputs


@dataclass(frozen=True, order=True)
class GroupKey:
    is_cpu: bool  # CPU runs sort after GPUs
    device: str  # GPU name as recorded, or "CPU"
    input_len: int
    output_len: int
    batch_size: int
    vllm: str = ""  # the vLLM version of the table's vLLM runs ("" for a table without any)

    @property
    def workload_title(self) -> str:
        return f"input {self.input_len} tokens, output {self.output_len} tokens, batch {self.batch_size}"

    @property
    def title(self) -> str:
        return f"{self.device}, {self.workload_title}" + (f", vLLM {self.vllm}" if self.vllm else "")


def library_version(libraries: dict[str, Optional[str]], name: str) -> Optional[str]:
    return next((value for key, value in libraries.items() if key.lower() == name.lower()), None)


def vllm_version_of(result: Result) -> str:
    """The vLLM version a vLLM run read inside its environment; "" for other backends."""
    if result.backend.name != "vllm":
        return ""
    return library_version(result.provenance.libraries, "vllm") or "version not recorded"


def group_key(result: Result) -> GroupKey:
    w, gpu = result.workload, result.provenance.gpu
    cpu = result.backend.device == "cpu"
    device = "CPU" if cpu else gpu.name if gpu else "GPU (name not recorded)"
    return GroupKey(cpu, device, w.input_len, w.output_len, w.batch_size, vllm_version_of(result))


def variant_of(result: Result) -> tuple[str, ...]:
    """How the run's engine configuration departs from the study's (empty: none). Results without settings.variant
    predate it: enforce_eager was then the one departure the kit could be asked for."""
    settings = result.backend.settings
    if (recorded := settings.get("variant")) is None:
        recorded = ["enforce_eager (no CUDA graphs, no torch.compile)"] if settings.get("enforce_eager") else []
    return tuple(recorded)


def created_key(created_utc: str) -> tuple[int, float, str]:
    """Chronological order of created_utc; unparseable stamps sort first, by their text."""
    stamp = created_utc.strip()
    try:
        dt = datetime.fromisoformat(stamp[:-1] + "+00:00" if stamp.endswith(("Z", "z")) else stamp)
    except ValueError:
        return (0, 0.0, stamp)
    return (1, (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp(), stamp)


def newest_first(runs: Iterable[Loaded]) -> list[Loaded]:
    return sorted(runs, key=lambda run: (created_key(run.result.created_utc), run.name), reverse=True)


def label_order(labels: Iterable[str]) -> list[str]:
    labels = set(labels)
    return [l for l in KNOWN_LABELS if l in labels] + sorted(labels - set(KNOWN_LABELS))


def version_key(version: str) -> tuple[tuple[int, ...], str]:
    """'0.12.0' < '0.20.0' < '0.20.0+cu128'; a part that is not a number sorts before 0, then the text decides."""
    return tuple(int(x) if x.isdigit() else -1 for x in re.split(r"[.+-]", version)), version


def stack_of(result: Result) -> tuple[tuple[str, str], ...]:
    """The versions that define a run's stack: its backend's libraries (torch included), as recorded."""
    libraries = result.provenance.libraries
    return tuple((lib, library_version(libraries, lib) or "not installed")
                 for lib in STACK_LIBRARIES.get(result.backend.name, ("torch",)))


def torch_deviation(result: Result) -> Optional[str]:
    """The run's torch deviation from its stack's pins ("torch 2.11.0 (pinned 2.9.1)"), None when torch was pinned."""
    return next((d for d in result.provenance.deviations if d.split(" ", 1)[0].lower() == "torch"), None)


def stack_words(result: Result) -> str:
    return ", ".join(f"{lib} {version}" for lib, version in stack_of(result))


class Spread:
    """One metric over a configuration's runs: the median of the run medians and their range."""

    def __init__(self, values: Sequence[float]) -> None:
        self.values = tuple(values)  # each run's median
        self.median, self.lo, self.hi = statistics.median(self.values), min(self.values), max(self.values)
        self.measured = len(self.values) >= 2  # a run-to-run spread exists only with two or more runs

    def contains(self, value: float) -> bool:
        """The run-to-run rule: value lies within [min, max] of the run medians (needs two or more runs)."""
        return self.measured and self.lo <= value <= self.hi


def hosts_text(runs: Sequence[Loaded]) -> str:
    """Distinct hosts of some runs (hostname, else boot id); runs without a host record are counted apart, never
    guessed to share one."""
    hosts = [h.hostname or h.boot_id if h else None for h in (r.result.provenance.host for r in runs)]
    unknown = hosts.count(None)
    parts = [plural(len(set(hosts) - {None}), "host")] if unknown < len(hosts) else []
    if unknown:
        parts.append("host not recorded" if unknown == len(runs) == 1 else
                     "hosts not recorded" if unknown == len(runs) else
                     f"{plural(unknown, 'run')} without a host record")
    return " + ".join(parts)


@dataclass(frozen=True)
class Cell:
    """The runs (newest first) of a backend row's study configuration on one stack, and what a week-1 cell shows."""

    stack: tuple[tuple[str, str], ...]
    runs: tuple[Loaded, ...]

    @property
    def newest(self) -> Loaded:
        return self.runs[0]

    def spread(self, metric: str) -> Spread:
        """metric: "ttft_ms" or "tpot_ms" (any summary field)."""
        return Spread([getattr(r.result.summary, metric).median for r in self.runs])


@dataclass
class Group:
    key: GroupKey
    cells: dict[str, Cell]  # backend label -> the study configuration's runs on the table's stack (the cell)
    # backend label -> the study configuration on other stacks (e.g. a stand-in torch): listed, never in a cell
    other_stacks: dict[str, list[Cell]]
    # backend label -> variant (e.g. async scheduling on) -> its runs, newest first: listed, never in a cell
    variants: dict[str, dict[tuple[str, ...], list[Loaded]]]

    @property
    def labels(self) -> list[str]:
        return label_order({*self.cells, *self.variants, *self.other_stacks})

    def configurations(self, label: str) -> list[tuple[tuple[str, ...], list[Loaded]]]:
        """(variant, runs newest first) of one backend row: the cell's study configuration first, then each variant."""
        study = [((), list(self.cells[label].runs))] if label in self.cells else []
        return study + list(self.variants.get(label, {}).items())


def group_runs(runs: Iterable[Loaded]) -> list[Group]:
    """One group per table (device, input_len, output_len, batch_size, vLLM version); runs without a vLLM version
    (transformers) join each vLLM version's table of their GPU and workload, or get a table of their own when there is
    none. In each, per backend label, the cell (every run of the study's configuration on one stack), the study
    configuration on other stacks, and the variant configurations (listed beside it); runs newest first."""
    by_key: dict[GroupKey, list[Loaded]] = {}
    for run in runs:
        by_key.setdefault(group_key(run.result), []).append(run)
    for key in [k for k in by_key if not k.vllm]:
        if siblings := [k for k in by_key if k.vllm and replace(k, vllm="") == key]:
            for sibling in siblings:
                by_key[sibling].extend(by_key[key])
            del by_key[key]
    groups = []
    for gkey in sorted(by_key):
        # A configuration: runs that measure the same thing (backend row, stack, engine variant; empty: the study's).
        # Every run of a configuration counts; none supersedes another.
        configurations: dict[tuple[str, tuple[tuple[str, str], ...], tuple[str, ...]], list[Loaded]] = {}
        for run in by_key[gkey]:
            r = run.result
            configurations.setdefault((r.backend.label, stack_of(r), variant_of(r)), []).append(run)
        study: dict[str, list[Cell]] = {}
        variants: dict[str, dict[tuple[str, ...], list[Loaded]]] = {}
        for (label, stack, variant), runs_ in sorted(configurations.items()):
            if variant:
                variants.setdefault(label, {}).setdefault(variant, []).extend(runs_)
            else:
                study.setdefault(label, []).append(Cell(stack, tuple(newest_first(runs_))))
        # one backend on several stacks: the cell takes the study's locked torch (no torch deviation), then the most
        # runs, then the newest run
        cells = {l: min(study[l], key=lambda c: (
            torch_deviation(c.newest.result) is not None, -len(c.runs),
            tuple(-x for x in created_key(c.newest.result.created_utc)[:2]), c.stack)) for l in label_order(study)}
        other_stacks = {l: [c for c in cs if c is not cells[l]] for l, cs in study.items() if len(cs) > 1}
        groups.append(Group(gkey, cells, other_stacks, {
            l: {v: newest_first(runs_) for v, runs_ in sorted(variants[l].items())} for l in label_order(variants)}))
    return groups


def python_version(text: str) -> str:
    """'3.12.3 (main, ...) [GCC ...]' -> '3.12.3'; anything else is returned as recorded."""
    m = re.match(r"\s*(\d+\.\d+(?:\.\d+)?\S*)", text)
    return m.group(1) if m else text


def provenance_text(loaded: Loaded) -> str:
    """One line: everything needed to trust (or rerun) the numbers of one result file."""
    r, p = loaded.result, loaded.result.provenance
    dirty = {True: ", uncommitted changes", False: ", clean", None: ""}[p.kit_dirty]
    parts = [f"file `{loaded.name}` (run {r.run_id}, created {r.created_utc})",
             f"kit commit {p.kit_commit[:12]}{dirty}" if p.kit_commit else "kit commit not recorded"]
    runner = f"runner {p.runner}"
    if p.image_id or p.image_tag:
        runner += ", image " + " ".join(x for x in (p.image_tag, p.image_id) if x)
    if p.lock_hash:
        runner += f", lock {p.lock_hash}"
    if p.slurm:
        s = p.slurm
        runner += f", Slurm job {s.job_id}" + "".join(text for value, text in (
            (s.node, f" on node {s.node}"), (s.partition, f", partition {s.partition}"),
            (s.gpu_type, f", GPU type {s.gpu_type} requested")) if value)
    libs = ", ".join(f"{k} {v if v is not None else 'not installed'}" for k, v in sorted(p.libraries.items()))
    parts += [runner, f"libraries: {libs or 'none recorded'}"]
    if p.deviations:
        parts.append("deviations from the pins: " + "; ".join(p.deviations))
    elif p.pins:
        parts.append("no deviations from the pins")
    parts.append(f"Python {python_version(p.python)} on {p.platform}")
    g = p.gpu
    parts.append("no GPU (CPU run)" if g is None else "GPU " + ", ".join([
        g.name, *([f"{g.memory_total_mib} MiB"] if g.memory_total_mib is not None else []),
        *([f"compute capability {g.compute_capability}"] if g.compute_capability else []),
        f"driver {g.driver or 'not recorded'}", f"CUDA runtime {g.cuda_runtime or 'not recorded'}"]))
    if p.label:
        parts.append(f"label: {p.label}")
    return "; ".join(parts) + "."


def workload_text(result: Result) -> str:
    w = result.workload
    model = f"{w.model} ({w.model_source}"
    if w.revision or w.resolved_revision:
        model += f", revision {w.revision or 'default'}, resolved {w.resolved_revision or 'not recorded'}"
    model += ")"
    weights = "real weights" if not w.synthetic else "synthetic weights" + (
        f" ({w.synthetic_config})" if w.synthetic_config else "")
    return (f"{model}, {weights}; input {w.input_len} tokens, output {w.output_len} tokens "
            f"(EOS ignored), batch {w.batch_size}; warm-up {w.warmup}, iterations {w.iterations}, seed {w.seed}")


def backend_text(result: Result) -> str:
    b = result.backend
    settings = ", ".join(f"{k}={v}" for k, v in sorted(b.settings.items()))
    return (f"{b.name}, quantization {b.quantization}, dtype {b.dtype}, device {b.device}"
            + (f"; settings: {settings}" if settings else ""))


class Footnotes:
    """Markdown footnotes numbered in order of first reference; one per results file."""

    def __init__(self, prefix: str) -> None:
        self.prefix, self.texts = prefix, {}  # file name -> footnote text

    def ref(self, loaded: Loaded) -> str:
        self.texts.setdefault(loaded.name, provenance_text(loaded))
        return f"[^{self.prefix}{list(self.texts).index(loaded.name) + 1}]"

    def lines(self) -> list[str]:
        """A blank line, then the footnotes; nothing when there are none."""
        return ["", *(f"[^{self.prefix}{i}]: {t}" for i, t in enumerate(self.texts.values(), 1))] if self.texts else []

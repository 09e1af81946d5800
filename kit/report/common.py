"""Shared pieces of report assembly: loading results/, grouping runs, markdown helpers, provenance.

Pure functions of their inputs: no clocks, no absolute paths in the output, fixed orderings.
"""
from __future__ import annotations

import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import tabulate

from core.errors import KitError
from core.results import BenchResult, NotAResultFile, ProfileResult, ResultFileError, load_result

# The seed's column order; other labels follow, sorted.
KNOWN_LABELS = ("vLLM (awq)", "vLLM (awq_marlin)", "transformers")
DASH = "—"  # a cell with no reproduced run

# Libraries shown in the versions bullets, per stack (the seed's order); Python is added last.
STACK_TITLES = {"vllm": "vLLM", "transformers": "transformers"}
STACK_LIBRARIES = {"vllm": ("torch", "vllm"), "transformers": ("torch", "autoawq", "transformers")}


# --------------------------------------------------------------------------- markdown


def _cell(value: object) -> str:
    # Stripped here: tabulate strips too, but whether it can be told not to differs between its versions.
    return str(value).replace("|", "\\|").replace("\n", " ").strip()


@contextmanager
def _seed_table_layout() -> Iterator[None]:
    """tabulate's module globals set for the seed's layout, restored afterwards: MIN_PADDING 0 (columns exactly as
    wide as their widest cell) and widths in code points even when wcwidth is installed ("—", "×", "→" are one
    column either way, but the bytes must not depend on what happens to be installed)."""
    names = ("MIN_PADDING", "WIDE_CHARS_MODE")
    saved = [getattr(tabulate, n) for n in names]
    for name, value in zip(names, (0, False)):
        setattr(tabulate, name, value)
    try:
        yield
    finally:
        for name, value in zip(names, saved):
            setattr(tabulate, name, value)


def pipe_table(headers: Sequence[object], rows: Iterable[Sequence[object]], align: Optional[str] = None) -> str:
    """A markdown pipe table laid out exactly like the seed's week-1 table (tabulate's "pipe" format).

    align: one character per column, 'l' or 'r' (default: all left).
    """
    head = [_cell(h) for h in headers]
    body = [[_cell(c) for c in r] for r in rows]
    if not body or any(len(r) != len(head) for r in body):
        raise ValueError("a table needs at least one row, and every row one cell per header")
    colalign = ["right" if a == "r" else "left" for a in (align or "l" * len(head))]
    with _seed_table_layout():
        return tabulate.tabulate(body, headers=head, tablefmt="pipe", colalign=colalign, disable_numparse=True)


def ms(value: Optional[float]) -> str:
    """The seed's cell format: 51.78ms."""
    return DASH if value is None else f"{value:.2f}ms"


def ratio(reproduced: float, published: float) -> str:
    return f"{reproduced / published:.2f}×"


def gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.3f} GB"


# --------------------------------------------------------------------------- loading


Result = Union[BenchResult, ProfileResult]


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


def _stderr_note(line: str) -> None:
    print(line, file=sys.stderr)


def load_inputs(results_dir: Path, note: Callable[[str], None] = _stderr_note) -> Inputs:
    """Every results file in results_dir, sorted by name.

    Non-results (other JSON, other files, folders not named *.json) are skipped with a one-line note;
    hidden files (temp files of an atomic write in progress) are ignored. A broken result file
    (malformed, truncated, wrong version, unreadable, wrong field) raises KitError with the one
    paragraph from core.results.load_result.
    """
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
    for path in entries:
        if path.name.startswith("."):
            continue
        if path.suffix != ".json":
            why = "a folder" if path.is_dir() else "not a .json file"
            inputs.skipped.append(f"{path.name}: {why}")
            note(f"report: skipped {path} ({why})")
            continue
        try:
            result = load_result(path)
        except NotAResultFile:
            why = "JSON that is not a kit result (no \"format\": \"awq-kit-result\")"
            inputs.skipped.append(f"{path.name}: {why}")
            note(f"report: skipped {path}: {why}")
            continue
        except ResultFileError as e:
            raise KitError(f"{e} Nothing was written to the reports folder.") from e
        target = inputs.bench if isinstance(result, BenchResult) else inputs.profile
        target.append(Loaded(path.name, result))
    return inputs


# --------------------------------------------------------------------------- devices and grouping


@dataclass(frozen=True, order=True)
class Device:
    is_cpu: bool  # CPU runs sort after GPUs
    name: str  # GPU name as recorded, or "CPU"

    @property
    def title(self) -> str:
        return self.name


def device_of(result: Result) -> Device:
    gpu = result.provenance.gpu
    if result.backend.device == "cpu":
        return Device(True, "CPU")
    if gpu is None:
        return Device(False, "GPU (name not recorded)")
    return Device(False, gpu.name)


@dataclass(frozen=True, order=True)
class GroupKey:
    device: Device
    input_len: int
    output_len: int
    batch_size: int
    vllm: str = ""  # the vLLM version of the table's vLLM runs ("" for a table without any)

    @property
    def workload_title(self) -> str:
        return f"input {self.input_len} tokens, output {self.output_len} tokens, batch {self.batch_size}"

    @property
    def title(self) -> str:
        return f"{self.device.title}, {self.workload_title}" + (f", vLLM {self.vllm}" if self.vllm else "")

    def without_vllm(self) -> "GroupKey":
        return GroupKey(self.device, self.input_len, self.output_len, self.batch_size)


def vllm_version_of(result: Result) -> str:
    """The vLLM version a vLLM run read inside its environment; "" for other backends."""
    if result.backend.name != "vllm":
        return ""
    return library_version(result.provenance.libraries, "vllm") or "version not recorded"


def variant_of(result: Result) -> tuple[str, ...]:
    """How the run's engine configuration departs from the study's (empty: the study's own configuration).

    vLLM results record it (settings.variant); for results without that field, enforce_eager is the one
    departure the kit could be asked for.
    """
    settings = result.backend.settings
    recorded = settings.get("variant")
    if recorded is None:
        recorded = ["enforce_eager (no CUDA graphs, no torch.compile)"] if settings.get("enforce_eager") else []
    return tuple(recorded)


def group_key(result: Result) -> GroupKey:
    w = result.workload
    return GroupKey(device_of(result), w.input_len, w.output_len, w.batch_size, vllm_version_of(result))


def _created_key(created_utc: str) -> tuple[int, float, str]:
    """Chronological order of created_utc; unparseable stamps sort first, by their text."""
    text = created_utc.strip()
    try:
        dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        return (0, 0.0, text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (1, dt.timestamp(), text)


def recency_key(loaded: Loaded) -> tuple[tuple[int, float, str], str]:
    """Latest run wins: by created_utc, then by file name."""
    return (_created_key(loaded.result.created_utc), loaded.name)


def label_order(labels: Iterable[str]) -> list[str]:
    labels = set(labels)
    return [l for l in KNOWN_LABELS if l in labels] + sorted(labels - set(KNOWN_LABELS))


@dataclass
class Group:
    key: GroupKey
    latest: dict[str, Loaded]  # backend label -> the run shown (the study's configuration only)
    superseded: dict[str, list[Loaded]]  # backend label -> older runs, newest first
    # backend label -> variant (e.g. async scheduling on) -> its runs, newest first: listed, never in a cell
    variants: dict[str, dict[tuple[str, ...], list[Loaded]]] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return label_order({*self.latest, *self.variants})


def _by_key(runs: Iterable[Loaded]) -> dict[GroupKey, list[Loaded]]:
    """Runs per table. A table holds one vLLM version; runs without one (transformers) join each vLLM version's
    table of their GPU and workload, or get a table of their own when there is none."""
    by_key: dict[GroupKey, list[Loaded]] = {}
    for run in runs:
        by_key.setdefault(group_key(run.result), []).append(run)
    for key in [k for k in by_key if not k.vllm]:
        siblings = [k for k in by_key if k.vllm and k.without_vllm() == key]
        if siblings:
            shared = by_key.pop(key)
            for sibling in siblings:
                by_key[sibling].extend(shared)
    return by_key


def group_runs(runs: Iterable[Loaded]) -> list[Group]:
    """One group per (device, input_len, output_len, batch_size, vLLM version); in each, per backend label, the
    latest run of the study's configuration (a cell) and the variant configurations (listed beside it)."""
    groups = []
    for key, key_runs in sorted(_by_key(runs).items()):
        by_label: dict[str, list[Loaded]] = {}
        for run in key_runs:
            by_label.setdefault(run.result.backend.label, []).append(run)
        latest, superseded, variants = {}, {}, {}
        for label in label_order(by_label):
            ordered = sorted(by_label[label], key=recency_key, reverse=True)
            study = [r for r in ordered if not variant_of(r.result)]
            if study:
                latest[label] = study[0]
                if study[1:]:
                    superseded[label] = study[1:]
            for run in ordered:
                if variant_of(run.result):
                    variants.setdefault(label, {}).setdefault(variant_of(run.result), []).append(run)
        groups.append(Group(key, latest, superseded, variants))
    return groups


# --------------------------------------------------------------------------- versions and provenance


def python_version(text: str) -> str:
    """'3.12.3 (main, ...) [GCC ...]' -> '3.12.3'; anything else is returned as recorded."""
    m = re.match(r"\s*(\d+\.\d+(?:\.\d+)?\S*)", text)
    return m.group(1) if m else text


def library_version(libraries: dict[str, Optional[str]], name: str) -> Optional[str]:
    for key, value in libraries.items():
        if key.lower() == name.lower():
            return value
    return None


def stack_versions(runs: Sequence[Loaded]) -> list[tuple[str, list[tuple[str, str]]]]:
    """Versions bullets for the runs shown in one table, in the seed's shape: per stack, per library."""
    out = []
    for stack in ("vllm", "transformers"):
        stack_runs = [r for r in runs if r.result.backend.name == stack]
        if not stack_runs:
            continue
        items = []
        for lib in STACK_LIBRARIES[stack]:
            items.append((lib, _joined(stack_runs, lambda r, lib=lib: library_version(r.result.provenance.libraries, lib)
                                       or "not installed")))
        items.append(("Python", _joined(stack_runs, lambda r: python_version(r.result.provenance.python))))
        out.append((STACK_TITLES[stack], items))
    return out


def _joined(runs: Sequence[Loaded], get: Callable[[Loaded], str]) -> str:
    values = {r.result.backend.label: get(r) for r in runs}
    distinct = sorted(set(values.values()))
    if len(distinct) == 1:
        return distinct[0]
    return "; ".join(f"{v} ({l})" for l, v in sorted(values.items(), key=lambda kv: label_order(values).index(kv[0])))


def provenance_text(loaded: Loaded) -> str:
    """One line: everything needed to trust (or rerun) the numbers of one result file."""
    r = loaded.result
    p = r.provenance
    parts = [f"file `{loaded.name}` (run {r.run_id}, created {r.created_utc})"]
    if p.kit_commit:
        dirty = {True: ", uncommitted changes", False: ", clean", None: ""}[p.kit_dirty]
        parts.append(f"kit commit {p.kit_commit[:12]}{dirty}")
    else:
        parts.append("kit commit not recorded")
    runner = f"runner {p.runner}"
    if p.image_id or p.image_tag:
        runner += f", image {p.image_tag or ''}{' ' if p.image_tag and p.image_id else ''}{p.image_id or ''}".rstrip()
    if p.lock_hash:
        runner += f", lock {p.lock_hash}"
    if p.slurm:
        s = p.slurm
        runner += (f", Slurm job {s.job_id}" + (f" on node {s.node}" if s.node else "")
                   + (f", partition {s.partition}" if s.partition else "")
                   + (f", GPU type {s.gpu_type} requested" if s.gpu_type else ""))
    parts.append(runner)
    libs = ", ".join(f"{k} {v if v is not None else 'not installed'}" for k, v in sorted(p.libraries.items()))
    parts.append(f"libraries: {libs or 'none recorded'}")
    if p.deviations:
        parts.append("deviations from the pins: " + "; ".join(p.deviations))
    elif p.pins:
        parts.append("no deviations from the pins")
    parts.append(f"Python {python_version(p.python)} on {p.platform}")
    if p.gpu:
        g = p.gpu
        gpu = [g.name]
        if g.memory_total_mib is not None:
            gpu.append(f"{g.memory_total_mib} MiB")
        if g.compute_capability:
            gpu.append(f"compute capability {g.compute_capability}")
        gpu.append(f"driver {g.driver or 'not recorded'}")
        gpu.append(f"CUDA runtime {g.cuda_runtime or 'not recorded'}")
        parts.append("GPU " + ", ".join(gpu))
    else:
        parts.append("no GPU (CPU run)")
    if p.label:
        parts.append(f"label: {p.label}")
    return "; ".join(parts) + "."


def workload_text(result: Result) -> str:
    w = result.workload
    model = f"{w.model} ({w.model_source}"
    if w.revision or w.resolved_revision:
        model += f", revision {w.revision or 'default'}, resolved {w.resolved_revision or 'not recorded'}"
    model += ")"
    if w.synthetic:
        weights = "synthetic weights" + (f" ({w.synthetic_config})" if w.synthetic_config else "")
    else:
        weights = "real weights"
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
        self.prefix = prefix
        self._ids: dict[str, str] = {}
        self._texts: list[tuple[str, str]] = []

    def ref(self, loaded: Loaded) -> str:
        if loaded.name not in self._ids:
            fid = f"{self.prefix}{len(self._ids) + 1}"
            self._ids[loaded.name] = fid
            self._texts.append((fid, provenance_text(loaded)))
        return f"[^{self._ids[loaded.name]}]"

    def render(self) -> str:
        return "\n".join(f"[^{fid}]: {text}" for fid, text in self._texts)

    def __bool__(self) -> bool:
        return bool(self._texts)

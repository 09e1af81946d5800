"""What a report prints about a run: its versions bullets, its provenance footnote, its workload and backend lines."""
from __future__ import annotations

import re
from typing import Callable, Sequence

from kit.report.common import STACK_LIBRARIES, STACK_TITLES, Loaded, Result, label_order, library_version


def python_version(text: str) -> str:
    """'3.12.3 (main, ...) [GCC ...]' -> '3.12.3'; anything else is returned as recorded."""
    m = re.match(r"\s*(\d+\.\d+(?:\.\d+)?\S*)", text)
    return m.group(1) if m else text


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

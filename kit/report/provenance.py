"""What a report prints about a run: its provenance footnote, its workload and backend lines."""
from __future__ import annotations

import re

from kit.report.common import Loaded, Result


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
        if loaded.name not in self.texts:
            self.texts[loaded.name] = provenance_text(loaded)
        return f"[^{self.prefix}{list(self.texts).index(loaded.name) + 1}]"

    def lines(self) -> list[str]:
        """A blank line, then the footnotes; nothing when there are none."""
        return ["", *(f"[^{self.prefix}{i}]: {t}" for i, t in enumerate(self.texts.values(), 1))] if self.texts else []

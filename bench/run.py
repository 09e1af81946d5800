"""`python -m bench run --backend transformers|vllm [workload options]`: the shared week-1 driver.

Resolve the model (checks before any weight is read), draw the prompt token ids, run the backend's measure()
(contract: bench/api.py) under a progress display, and write a core.results.BenchResult (summary, provenance,
roofline, and on a GPU the run's conditions: bench/conditions.py) atomically to $KIT_RESULTS_DIR. Ctrl-C writes no
result and says how many measured iterations had finished.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import secrets
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

from bench.api import IterationProgress, Measurement
from core.errors import BenchError
from core.workload import BACKENDS, Parser, add_spec_argument, add_workload_args, parse_spec
from core.results import (BenchResult, BenchSamples, BenchSummary, ResultFileError, Roofline, RunConditions,
                          atomic_write_text, dump_result, harness_overhead_text, result_filename, summarize,
                          write_result)

BACKEND_MODULES = {"transformers": "bench.hf_backend", "vllm": "bench.vllm_backend"}
STACKS = {"transformers": "hf", "vllm": "vllm"}


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def progress_display(progress: IterationProgress) -> Iterator[None]:
    """IterationProgress as tqdm bars on a terminal, log lines otherwise. It runs when the scenario loop counts a
    finished iteration (IterationProgress.listener), between timed requests: a polling thread, as the kit once
    had, cost the timed runs measurably (README, Methodology)."""
    tty, bars, seen = sys.stderr.isatty(), {}, {"warm-up": 0, "measured": 0}

    def update() -> None:
        for desc, done, total in (("warm-up", progress.warmup_done, progress.warmup_total),
                                  ("measured", progress.done, progress.total)):
            if done == seen[desc] or not total:
                continue
            if not tty:
                _log(f"{desc} {done}/{total}")
            else:
                if desc not in bars:
                    from tqdm.auto import tqdm

                    bars[desc] = tqdm(total=total, desc=desc, unit="it", file=sys.stderr, leave=True)
                bars[desc].update(done - seen[desc])
            seen[desc] = done

    progress.listener = update
    try:
        yield
    finally:
        progress.listener = None
        update()
        for bar in bars.values():
            bar.close()


def _check_measurement(m: Measurement, iterations: int, output_len: int) -> None:
    optional = [x for x in (m.instrumented_generate_ms, m.bare_generate_ms) if x is not None]
    lens = {len(m.ttft_ms), len(m.tpot_ms), len(m.e2e_ms), len(m.itl_ms), *map(len, optional)}
    if lens != {iterations}:
        raise BenchError(f"the backend returned {sorted(lens)} samples for {iterations} iterations; this is a bug in "
                         "the backend module, please report it.")
    per_output = m.tokens_per_output or [[1] * output_len for _ in m.itl_ms]
    bad = [(len(g), k) for g, k in zip(m.itl_ms, per_output) if sum(k) != output_len or len(g) != len(k) - 1]
    if bad or len(per_output) != iterations:
        raise BenchError(f"the backend returned (gaps, tokens per output) {bad[:3]} for output_len {output_len}: one "
                         "gap per streamed output after the first, outputs summing to output_len; this is a bug in "
                         "the backend module.")
    if not any(m.itl_ms):
        raise BenchError(f"every iteration's {output_len} tokens came in a single streamed output (vLLM merged them), "
                         "so there is no inter-token gap to report. Run with a longer --output-len.")


def record_conditions(progress: IterationProgress):
    """Hooks the GPU-conditions recorder into the scenario loop: launch probe and clocks right before the first
    measured iteration, clocks right after the last (GPU runs only; it never fails the bench)."""
    from bench.conditions import ConditionsRecorder

    recorder = ConditionsRecorder()

    def before() -> None:
        _log("launch-latency probe (child process) and GPU clocks before the measured iterations")
        recorder.before()
        probe = recorder.conditions.launch_probe
        if probe is not None:
            graph = f", CUDA graph replay {probe.graph_replay_us:.1f} us" if probe.graph_replay_us else ""
            _log(f"empty-kernel launch {probe.empty_kernel_launch_us:.2f} us{graph}")
        for note in recorder.conditions.notes:
            _log(note)

    progress.before_measured, progress.after_measured = before, recorder.after
    return recorder


def build_result(workload, measurement: Measurement, provenance, roofline, notes: list[str],
                 conditions: Optional[RunConditions] = None) -> BenchResult:
    now, m = datetime.now(timezone.utc), measurement
    return BenchResult(
        run_id=f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}", created_utc=now.isoformat(timespec="seconds"),
        workload=workload, backend=m.backend,
        samples=BenchSamples(**{name: getattr(m, name) for name in BenchSamples.model_fields}),
        summary=BenchSummary(ttft_ms=summarize(m.ttft_ms), tpot_ms=summarize(m.tpot_ms),
                             itl_ms=summarize([g for gaps in m.itl_ms for g in gaps]), e2e_ms=summarize(m.e2e_ms)),
        provenance=provenance, roofline=roofline, conditions=conditions, notes=notes + list(m.notes),
    )


def parse_run_args(argv: list[str]):
    """(backend, checked WorkloadSpec) of `python -m bench run`. Raises KitError."""
    p = Parser(prog="python -m bench run", description="Week-1 TTFT/TPOT of one backend (one vLLM row).")
    p.add_argument("--backend", choices=BACKENDS, required=True)
    add_spec_argument(p)
    add_workload_args(p, vllm=True)
    ns, spec = parse_spec(p, argv)
    return ns.backend, spec


def run(argv: list[str]) -> int:
    backend_name, args = parse_run_args(argv)
    from bench.workload import build_workload, prompt_token_ids, resolve_device, resolve_model

    progress = IterationProgress(total=args.iters, warmup_total=args.warmup)
    try:
        try:
            backend = importlib.import_module(BACKEND_MODULES[backend_name])
        except ImportError as e:
            raise BenchError(f"the {backend_name} backend cannot be imported here ({e}). Run it in its stack's image "
                             "(or a venv made from its lock): transformers needs the HF stack, vllm the vLLM stack."
                             ) from e
        # Checks that need no model (GPU present, kernel supported) before anything is downloaded or generated.
        if hasattr(backend, "preflight"):
            backend.preflight(args)
        device = "cuda" if backend_name == "vllm" else resolve_device(args.device)  # resolved once, here
        args = args.replace(device=device)
        resolved = resolve_model(args)
        prompt_ids = prompt_token_ids(resolved.config, args.input_len, args.seed, resolved.path)
        workload = build_workload(args, resolved)
        _log(f"{backend_name}: {resolved.model_id} ({resolved.source}"
             f"{', commit ' + resolved.resolved_revision[:12] if resolved.resolved_revision else ''}), input "
             f"{args.input_len}, output {args.output_len}, warm-up {args.warmup}, iterations {args.iters}, "
             f"seed {args.seed}, device {device}")
        bandwidth, method, recorder = None, None, None
        if device.startswith("cuda"):
            from bench.roofline import measure_bandwidth_subprocess

            _log("measuring device-to-device copy bandwidth (child process)")
            bandwidth, method = measure_bandwidth_subprocess()
            if bandwidth is None:
                _log(method)  # why, which also goes into the result's notes
            recorder = record_conditions(progress)
        with progress_display(progress):
            measurement = backend.measure(workload, resolved, prompt_ids, args, progress)
    except KeyboardInterrupt:
        _log(f"interrupted after {progress.done} of {progress.total} measured iterations "
             f"({progress.warmup_done} of {progress.warmup_total} warm-up runs); no result file was written.")
        return 130
    _check_measurement(measurement, args.iters, args.output_len)

    from bench.provenance import collect_provenance
    from bench.roofline import decode_step_bytes

    total, breakdown = decode_step_bytes(Path(resolved.path), resolved.config, args.input_len, args.output_len)
    roofline = Roofline(bytes_per_decode_step=total, bytes_breakdown=breakdown, bandwidth_gb_s=bandwidth,
                        bandwidth_method=method if bandwidth else None)
    notes = []
    if resolved.source == "synthetic":
        notes.append(f"Synthetic weights (config {resolved.synthetic_config}, weight seed {args.synthetic_seed}): "
                     "random int4 values, same shapes and kernels as the real checkpoint; timings do not depend on "
                     "the weight values.")
    if measurement.backend.device == "cpu":
        notes.append("CPU run: not comparable with the published GPU numbers.")
    if device.startswith("cuda") and bandwidth is None:
        notes.append(method)
    result = build_result(workload, measurement, collect_provenance(STACKS[backend_name], device), roofline, notes,
                          recorder.conditions if recorder else None)
    path = _write_or_keep(result)
    s = result.summary
    floor = roofline.floor_ms
    _log(f"{result.backend.label}: TTFT median {s.ttft_ms.median:.2f} ms, TPOT median {s.tpot_ms.median:.2f} ms "
         f"({result.workload.iterations} iterations)"
         + (f"; floor {floor:.2f} ms/token = {100 * floor / s.tpot_ms.median:.0f}% of TPOT" if floor else ""))
    overhead = harness_overhead_text(measurement.instrumented_generate_ms, measurement.bare_generate_ms)
    if overhead:
        _log(f"harness overhead: {overhead}")
    _log(f"wrote {path}")
    return 0


def _write_or_keep(result: BenchResult) -> Path:
    """Write the result; one that contradicts itself is refused, but its measured data is kept out of results/ (in
    the output folder, for whoever investigates), never lost."""
    try:
        return write_result(result, Path(os.environ.get("KIT_RESULTS_DIR") or "results") / result_filename(result))
    except ResultFileError as e:
        kept = Path(os.environ.get("KIT_OUTPUT_DIR") or "output") / "refused" / result_filename(result)
        atomic_write_text(kept, dump_result(result))
        raise BenchError(f"{e} The measured data is kept, outside the results folder, in {kept}.") from e

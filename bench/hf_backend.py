"""transformers 4.51.3 + autoawq 0.2.9 backend (contract: bench/api.py): generate exactly N tokens greedily, time each.

Loading (`load_awq_model`, also the profiler's): on a GPU, from_pretrained. On CPU from_pretrained cannot be used
(its AwqQuantizer switches to IPEX, which torch >= 2.9 lacks), so (FIELD-NOTES) the model is built on the meta
device, its linears swapped by replace_with_awq_linear, every tensor loaded strictly, and autoawq's naive path forced
(with triton installed it would pick Triton kernels and crash on CPU tensors). Each measured iteration is followed
by the same generate() without the streamer, back to back, so the difference is what the instrumentation costs.
"""
from __future__ import annotations

import contextlib
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

from bench.api import IterationProgress, Measurement, ResolvedModel, derive_token_timing, run_scenario, run_sync
from core.errors import BenchError
from core.results import Backend
from core.rules import require_awq


def _import_awq_gemm():
    # record=True swallows autoawq's import-time deprecation banner (it resets the filters itself).
    with warnings.catch_warnings(record=True):
        try:
            from awq.modules.linear import gemm
        except ImportError as e:
            raise BenchError(
                f"autoawq cannot be imported here ({e}). The transformers backend needs autoawq 0.2.9 (and its "
                "dependency datasets): use the HF image, or a venv made from images/hf/requirements.lock."
            ) from e
    return gemm


def awq_kernel_state() -> str:
    """The path WQLinearMMFunction will take, from autoawq's module state: awq_ext | triton | naive."""
    gemm = _import_awq_gemm()
    return "awq_ext" if gemm.awq_ext is not None else "triton" if gemm.TRITON_AVAILABLE else "naive"


# autoawq's module-level entry points, and the labels their calls are counted under.
AWQ_ENTRY_POINTS = {"dequantize_gemm": "naive.dequantize_gemm", "awq_gemm_triton": "triton.awq_gemm",
                    "awq_dequantize_triton": "triton.awq_dequantize"}


@contextlib.contextmanager
def observe_awq_calls() -> Iterator[dict[str, int]]:
    """Count calls into autoawq's kernel entry points while the block runs (what actually ran)."""
    gemm = _import_awq_gemm()
    counts: dict[str, int] = {}
    saved = {attr: fn for attr in (*AWQ_ENTRY_POINTS, "awq_ext") if (fn := getattr(gemm, attr, None)) is not None}

    def counting(fn: Any, label: str):
        def wrapped(*a, **k):
            counts[label] = counts.get(label, 0) + 1
            return fn(*a, **k)

        return wrapped

    class CountingExt:
        """Stands in for the awq_ext extension module: forwards every attribute, counting the calls by name."""

        def __getattr__(self, name: str):
            fn = getattr(saved["awq_ext"], name)
            return counting(fn, f"awq_ext.{name}") if callable(fn) else fn

    for attr in saved:
        setattr(gemm, attr, CountingExt() if attr == "awq_ext" else counting(saved[attr], AWQ_ENTRY_POINTS[attr]))
    try:
        yield counts
    finally:
        for attr, fn in saved.items():
            setattr(gemm, attr, fn)


# The path that ran, from the calls counted (all of them seen), most specific first.
AWQ_PATHS = (("awq_ext", ("awq_ext.gemm_forward_cuda",)), ("awq_ext", ("awq_ext.dequantize_weights_cuda",)),
             ("triton (GEMM kernel below 1024 tokens, dequantize + matmul at or above)",
              ("triton.awq_gemm", "triton.awq_dequantize")),
             ("triton: awq_gemm_kernel", ("triton.awq_gemm",)),
             ("triton: awq_dequantize_kernel + matmul", ("triton.awq_dequantize",)),
             ("naive: dequantize_gemm + torch.matmul", ("naive.dequantize_gemm",)))


def _load_cpu(path: Path, config_dict: dict[str, Any], progress: bool):
    import torch
    from accelerate import init_empty_weights
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AwqConfig
    from transformers.integrations.awq import replace_quantization_scales, replace_with_awq_linear
    from transformers.quantizers.base import HfQuantizer

    config = AutoConfig.from_pretrained(path)
    qc = config_dict["quantization_config"]
    awq_config = AwqConfig(bits=int(qc.get("bits", 4)), group_size=int(qc.get("group_size", 128)),
                           zero_point=bool(qc.get("zero_point", True)), version="gemm",
                           modules_to_not_convert=qc.get("modules_to_not_convert"))
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float16)
    # Same modules kept in fp16 as transformers' AwqQuantizer: the output embedding (lm_head) by default.
    not_convert = HfQuantizer.get_modules_to_not_convert(model, awq_config.modules_to_not_convert)
    model, replaced = replace_with_awq_linear(model, modules_to_not_convert=not_convert,
                                              quantization_config=awq_config)
    if not replaced:
        raise BenchError(f"{path}: no linear layer was replaced by an AWQ layer; the architecture "
                         f"{config.architectures} is not one autoawq's layer swap understands.")
    model = replace_quantization_scales(model, config.model_type)

    from tqdm.auto import tqdm  # a dependency of transformers

    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise BenchError(f"{path} holds no *.safetensors files. The kit reads safetensors checkpoints only; "
                         "re-download the model or regenerate the synthetic checkpoint.")
    state: dict[str, Any] = {}
    for f in tqdm(files, desc="load (CPU, strict)", unit="shard", disable=not progress, file=sys.stderr):
        state.update(load_file(f, device="cpu"))
    expected = set(model.state_dict().keys())
    tied = bool(getattr(config, "tie_word_embeddings", False))
    missing = sorted(expected - set(state) - ({"lm_head.weight"} if tied else set()))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise BenchError(
            f"{path}: the checkpoint does not match its config for an AWQ GEMM model: {len(missing)} tensors missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}). "
            "It may be a different architecture or AWQ version, or a damaged download; re-download or regenerate it."
        )
    try:
        model.load_state_dict(state, strict=not tied, assign=True)
    except RuntimeError as e:
        raise BenchError(f"{path}: tensors do not fit the model built from its config ({str(e)[:300]}). "
                         "Re-download or regenerate the checkpoint.") from e
    if tied:
        model.tie_weights()
    del state
    meta = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if meta:
        raise BenchError(f"{path}: {len(meta)} tensors were never loaded (e.g. {meta[:3]}).")
    return model.eval()


def load_awq_model(model: ResolvedModel, device: str, *, progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """(model in eval mode, fp16; info for the result's settings): an AWQ GEMM checkpoint loaded with transformers +
    autoawq on `device` ("cuda", "cuda:N" or "cpu"; on CPU autoawq's naive path is forced first)."""
    import torch

    path = Path(model.path)
    config = model.config or {}
    require_awq(config, model.model_id)
    gemm = _import_awq_gemm()
    before = awq_kernel_state()
    t0 = time.perf_counter()
    if device.startswith("cuda"):
        from transformers import AutoModelForCausalLM

        device = "cuda:0" if device == "cuda" else device
        try:
            loaded = AutoModelForCausalLM.from_pretrained(str(path), torch_dtype=torch.float16,
                                                          device_map={"": device}, low_cpu_mem_usage=True).eval()
        except (ImportError, RuntimeError, ValueError) as e:
            raise BenchError(f"transformers could not load the AWQ checkpoint {path} on {device}: {e}. The HF stack "
                             "needs autoawq 0.2.9 with triton (or awq_ext) and a CUDA GPU of compute capability "
                             ">= 7.5.") from e
        loader = "AutoModelForCausalLM.from_pretrained(torch_dtype=float16, device_map={'': %r})" % device
    else:
        gemm.awq_ext, gemm.TRITON_AVAILABLE = None, False  # autoawq's naive dequantize + matmul path
        gemm.user_has_been_warned = True  # the "naive (slow) implementation" warning: recorded instead
        loaded = _load_cpu(path, config, progress)
        loader = ("CPU recipe: from_config on meta + transformers.integrations.awq.replace_with_awq_linear("
                  "AwqConfig(version='gemm')) + strict safetensors load; autoawq naive path forced")
    load_s = time.perf_counter() - t0
    n_awq = sum(1 for m in loaded.modules() if isinstance(m, gemm.WQLinear_GEMM))
    if n_awq == 0:
        raise BenchError(f"{model.model_id}: the loaded model has no autoawq WQLinear_GEMM layer, so the AWQ path "
                         "would not be measured. Check the checkpoint's quantization_config (version gemm).")
    info = {"loader": loader, "device": device, "dtype": str(next(loaded.parameters()).dtype).replace("torch.", ""),
            "awq_kernel_state": awq_kernel_state(), "awq_kernel_state_before": before, "awq_linear_layers": n_awq,
            "attn_implementation": getattr(loaded.config, "_attn_implementation", None), "load_s": round(load_s, 3),
            "quantization_config": config.get("quantization_config"),
            "torch_num_threads": torch.get_num_threads() if not device.startswith("cuda") else None}
    return loaded, info


class TimingStreamer:
    """A transformers streamer that timestamps every generated token: generate() calls put() with the prompt, then
    once per generated token, then end(); a call carrying several tokens repeats its reading."""

    def __init__(self, sync: bool):
        self.sync, self.prompt_seen = sync, False
        self.times: list[float] = []

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        if self.sync:
            import torch

            torch.cuda.synchronize()
        self.times.extend([time.perf_counter()] * max(1, int(value.numel())))

    def end(self) -> None:  # the streamer protocol's last call: nothing to time
        pass


def _generation_config(config: dict[str, Any], n: int):
    from transformers import GenerationConfig

    eos = config.get("eos_token_id")
    pad = config.get("pad_token_id")
    if pad is None:
        pad = eos[0] if isinstance(eos, list) else eos
    return GenerationConfig(max_new_tokens=n, min_new_tokens=n, do_sample=False, num_beams=1, use_cache=True,
                            eos_token_id=eos, pad_token_id=pad, bos_token_id=config.get("bos_token_id"))


def generate_timed(model, input_ids, gen_config, device: str, *, bare: bool = False) -> dict[str, Any]:
    """One greedy generate() of exactly gen_config.max_new_tokens tokens under inference_mode, timed from one device
    sync before to one after (generate_ms) and, unless bare, token by token by the streamer. The bare run (the
    harness-overhead baseline) differs from the instrumented one only by the streamer."""
    import torch

    on_gpu = device.startswith("cuda")
    streamer = None if bare else TimingStreamer(sync=on_gpu)
    # Our config becomes the model's own: a generation_config passed to generate() gets its default-valued
    # fields (do_sample=False among them) replaced by the checkpoint's generation_config.json (Qwen3 samples).
    model.generation_config = gen_config
    attention_mask = torch.ones_like(input_ids)
    if on_gpu:
        torch.cuda.synchronize()
    t_submit = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids, attention_mask=attention_mask, streamer=streamer)
    if on_gpu:
        torch.cuda.synchronize()
    generate_ms = (time.perf_counter() - t_submit) * 1e3
    n, new = gen_config.max_new_tokens, out.shape[-1] - input_ids.shape[-1]
    timed = n if bare else len(streamer.times)
    if new != n or timed != n:
        raise BenchError(f"{'the bare ' if bare else ''}generate() produced {new} new tokens ({timed} timed) instead "
                         f"of exactly {n}: min_new_tokens did not hold. Check the checkpoint's eos_token_id.")
    if bare:
        return {"generate_ms": generate_ms}
    ttft, gaps, e2e, tpot = derive_token_timing(t_submit, streamer.times)
    return {"ttft_ms": ttft, "itl_ms": gaps, "e2e_ms": e2e, "tpot_ms": tpot, "generate_ms": generate_ms,
            "tokens": out[0, input_ids.shape[-1]:].tolist()}


def measure(workload, model: ResolvedModel, prompt_ids: list[int], args, progress: IterationProgress) -> Measurement:
    import torch

    device = args.device  # "cuda" or "cpu": resolved once, by the driver
    hf_model, info = load_awq_model(model, device, progress=sys.stderr.isatty())
    dev = info["device"]
    input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=dev)
    gen_config = _generation_config(model.config, workload.output_len)

    tokens: list[list[int]] = []  # the greedy tokens of every timed generate()
    observed: dict[str, int] = {}  # autoawq calls during the first one

    async def timed_pair(warmup: bool, i: int) -> dict[str, Any]:
        """One iteration: the timed generate() and, when measured, the bare one right after it (the baseline)."""
        with (contextlib.nullcontext({}) if tokens else observe_awq_calls()) as counts:
            rec = generate_timed(hf_model, input_ids, gen_config, dev)
        observed.update(counts)
        tokens.append(rec["tokens"])
        if not warmup:
            rec["bare_ms"] = generate_timed(hf_model, input_ids, gen_config, dev, bare=True)["generate_ms"]
        return rec

    recs = run_sync(run_scenario(timed_pair, workload.warmup, workload.iterations, progress))
    deterministic = all(t == tokens[0] for t in tokens)
    path = next((label for label, calls in AWQ_PATHS if all(observed.get(c) for c in calls)), "none observed")
    on_cpu = dev == "cpu"
    if on_cpu and not path.startswith("naive"):
        raise BenchError(f"On CPU autoawq ran {path!r} instead of its naive path; the kit forces the naive path on "
                         "CPU. This is a bug in the kit: please report it with this message.")
    settings = {
        "awq_kernel_path": path,
        "awq_kernel_state_before_forcing": info["awq_kernel_state_before"],
        "awq_calls_first_generate": observed,
        "checkpoint_quantization_config": info["quantization_config"],  # as read from config.json
        **{k: info[k] for k in ("awq_kernel_state", "awq_linear_layers", "loader", "load_s", "attn_implementation")},
        "grad_mode": "torch.inference_mode",  # generate_timed's
        "generation": {"max_new_tokens": workload.output_len, "min_new_tokens": workload.output_len,
                       "do_sample": False, "num_beams": 1, "use_cache": True, "cache": "DynamicCache"},
        "timing": ("time.perf_counter() at TimingStreamer.put() per generated token"
                   + (", after torch.cuda.synchronize()" if not on_cpu else "")
                   + "; clock started right before generate()"),
        "overhead_baseline": ("after each measured iteration, the same generate() without streamer or logits "
                              "processor, timed from one sync before to one sync after (samples.bare_generate_ms)"),
        "greedy_tokens_identical_across_runs": deterministic,
    }
    notes = []
    if on_cpu:
        settings["torch_num_threads"] = info["torch_num_threads"]
        notes.append("CPU run: autoawq's naive path (dequantize_gemm + torch.matmul per call) in fp16 on the CPU. "
                     "These timings show the harness working; they are not comparable with the published GPU numbers.")
    if not deterministic and path.startswith("triton"):
        notes.append("Greedy tokens differed between runs: autoawq's Triton GEMM adds its split-K partial sums with "
                     "fp16 atomic_add, whose order varies from run to run; near-ties in the logits (common with random "
                     "weights) then flip. Every run still generated exactly the workload's output length.")
    backend = Backend(name="transformers", label="transformers", quantization="awq (autoawq WQLinear_GEMM)",
                      dtype=info["dtype"], device="cpu" if on_cpu else "cuda", settings=settings)
    return Measurement(**{f: [r[f] for r in recs] for f in ("ttft_ms", "tpot_ms", "e2e_ms", "itl_ms")}, backend=backend,
                       notes=notes, instrumented_generate_ms=[r["generate_ms"] for r in recs],
                       bare_generate_ms=[r["bare_ms"] for r in recs])

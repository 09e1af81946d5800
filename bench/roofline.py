"""The memory-bandwidth floor of one decode step at batch 1.

A decode step reads every weight once, except the input embedding (one row): `decode_step_bytes` adds the tensors'
sizes from the safetensors headers (no tensor data is read), plus the fp16 KV cache read at the workload's mean
context. The floor divides by `measure_copy_bandwidth`, a device-to-device copy timed with CUDA events, which runs in
a child process (`measure_bandwidth_subprocess`) so the driver never initialises CUDA before the backend does.

    python -m bench.roofline MODEL_DIR [--input-len N --output-len N]   bytes per decode step
    python -m bench.roofline --bandwidth                                 copy bandwidth (JSON)
"""
from __future__ import annotations

import json
import statistics
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from core.errors import BenchError

KIT_ROOT = Path(__file__).resolve().parent.parent
BANDWIDTH_METHOD = ("device-to-device torch copy_ of {size} MiB, bytes read + written, CUDA events, "
                    "median of {n} after {w} warm-up copies")


def safetensors_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise BenchError(f"{path}: too short for a safetensors file; re-download or regenerate the checkpoint.")
        (n,) = struct.unpack("<Q", raw)
        if n > 100 * 2**20:
            raise BenchError(f"{path}: implausible safetensors header size {n}; the file is damaged.")
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header


def tensor_sizes(model_dir: Path) -> dict[str, int]:
    """name -> bytes of every tensor in the checkpoint's *.safetensors files."""
    sizes: dict[str, int] = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        for name, meta in safetensors_header(f).items():
            start, end = meta["data_offsets"]
            sizes[name] = int(end) - int(start)
    if not sizes:
        raise BenchError(f"{model_dir}: no safetensors tensors found, so the bytes per decode step are unknown.")
    return sizes


def _category(name: str) -> str:
    for suffix in ("qweight", "qzeros", "scales"):
        if name.endswith("." + suffix):
            return suffix
    if name.startswith("lm_head."):
        return "lm_head"
    return "embed_tokens" if "embed_tokens" in name else "norms" if "norm" in name else "other"


def attention_dims(config: dict[str, Any]) -> tuple[int, int, int, int]:
    """(hidden size, attention heads, key/value heads, head dim) of a decoder's config.json."""
    h, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    return h, heads, int(config.get("num_key_value_heads") or heads), int(config.get("head_dim") or h // heads)


def kv_cache_bytes_per_position(config: dict[str, Any], dtype_bytes: int = 2) -> int:
    _h, _heads, kv, hd = attention_dims(config)
    return int(config["num_hidden_layers"]) * 2 * kv * hd * dtype_bytes


def decode_step_bytes(model_dir: Path, config: dict[str, Any], input_len: int,
                      output_len: int) -> tuple[int, dict[str, int]]:
    """(total, breakdown) bytes read by one batch-1 decode step."""
    breakdown: Counter[str] = Counter()
    for name, n in tensor_sizes(model_dir).items():
        breakdown[_category(name)] += n
    vocab = int(config["vocab_size"])
    embed_full = breakdown.pop("embed_tokens", 0)
    if "lm_head" not in breakdown and config.get("tie_word_embeddings"):
        breakdown["lm_head"] = embed_full  # tied: the output projection reads the whole matrix
    breakdown["embed_tokens_one_row"] = embed_full // vocab if vocab else 0
    # Decode steps 2..N attend over input_len + 1 .. input_len + N - 1 positions: mean input_len + N/2.
    breakdown["kv_cache_mean_context"] = int(kv_cache_bytes_per_position(config) * (input_len + output_len / 2))
    parts = {k: v for k, v in sorted(breakdown.items()) if v}
    return sum(parts.values()), parts


def measure_copy_bandwidth(device: str = "cuda", size_mib: int = 1024, repeats: int = 10,
                           warmup: int = 3) -> tuple[float, str]:
    """(GB/s counting bytes read + written, method) of a device-to-device copy."""
    import torch

    n = size_mib * 2**20
    free, _total = torch.cuda.mem_get_info()
    while 2 * n > free * 0.8 and n > 64 * 2**20:
        n //= 2
    src = torch.empty(n, dtype=torch.uint8, device=device)
    src.fill_(1)
    dst = torch.empty_like(src)
    for _ in range(warmup):
        dst.copy_(src)
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del src, dst
    torch.cuda.empty_cache()
    gbs = 2 * n / statistics.median(times) / 1e9
    return gbs, BANDWIDTH_METHOD.format(size=n // 2**20, n=repeats, w=warmup)


def run_child(module: str, *args: str, what: str, timeout: float) -> tuple[Optional[str], Optional[str]]:
    """(stdout, None) of `python -m module args` in a child interpreter, which shares no CUDA context, stream or
    allocator with the backend; (None, "what: why") when it fails. Ctrl-C still propagates (the child gets it too)."""
    try:
        proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout,
                              cwd=KIT_ROOT)  # -m finds bench/ from any working directory
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{what}: {e}"
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        return None, f"{what}: {last[0]}"
    return proc.stdout, None


def measure_bandwidth_subprocess(timeout: float = 300) -> tuple[Optional[float], Optional[str]]:
    stdout, why = run_child("bench.roofline", "--bandwidth", what="bandwidth not measured", timeout=timeout)
    if stdout is None:
        return None, why
    data = json.loads(stdout.strip().splitlines()[-1])
    return data["bandwidth_gb_s"], data["method"]


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.roofline", description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir", nargs="?", type=Path)
    p.add_argument("--input-len", type=int, default=32)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--bandwidth", action="store_true", help="measure the device-to-device copy bandwidth (GPU)")
    ns = p.parse_args(argv)
    if ns.bandwidth:
        gbs, method = measure_copy_bandwidth()
        print(json.dumps({"bandwidth_gb_s": gbs, "method": method}))
        return 0
    if ns.model_dir is None:
        p.error("give a checkpoint folder or --bandwidth")
    config = json.loads((ns.model_dir / "config.json").read_text())
    total, breakdown = decode_step_bytes(ns.model_dir, config, ns.input_len, ns.output_len)
    print(json.dumps({"bytes_per_decode_step": total, "breakdown": breakdown}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Synthetic AWQ checkpoints (`python -m bench synth`; README, "Synthetic weights"): shards laid out as
save_pretrained does (5 GB, at least 2) with their index, and last a completion marker (MARKER). No tokenizer.

Tensors are in AWQ GEMM format (FIELD-NOTES): qweight int32 [K, N/8], qzeros int32 [K/G, N/8], scales fp16
[K/G, N], eight int4 values per int32 in AWQ_ORDER. Uniform int4 values make qweight uniform random 32-bit words,
drawn directly (20x faster than packing). Scales lie in SCALE_RANGE so activations stay finite through 36 layers.
Each tensor has its own RNG stream seeded from (seed, name), so the bytes do not depend on the shard layout. Shards
are written in chunks of at most CHUNK_BYTES into a hidden sibling folder, renamed into place at the end and removed
on any error or Ctrl-C. numpy only: never imports torch.
"""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from bench.roofline import attention_dims
from core.errors import BenchError
from core.rules import require_awq

GENERATOR_VERSION = 1
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
MARKER = ".kit-synthetic-complete.json"
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
HF_MAX_SHARD_BYTES = 5 * 10**9  # save_pretrained's default max_shard_size="5GB"
CHUNK_BYTES = 8 * 2**20
SCALE_RANGE = (1e-3, 1e-2)
EMBED_STD = 0.02
SUPPORTED_MODEL_TYPES = ("qwen3", "qwen2", "llama", "mistral")
QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")

_SAFETENSORS_DTYPE = {"I32": np.dtype("<i4"), "F16": np.dtype("<f2"), "F32": np.dtype("<f4")}


def named_configs() -> list[str]:
    """Names accepted by --synthetic (bench/configs/<name>.json)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json") if not p.name.endswith(".generation_config.json"))


def config_fingerprint(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def load_config(name_or_path: str) -> tuple[str, dict[str, Any], Optional[dict[str, Any]]]:
    """(name, config.json dict, generation_config dict or None) for a named config or a json path. A path's name
    is its stem plus a hash of its content, so two different files called config.json never share a cache folder."""
    path, name = CONFIG_DIR / f"{name_or_path}.json", name_or_path
    if "/" in name_or_path or os.sep in name_or_path or not path.is_file():
        path, name = Path(name_or_path), None
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise BenchError(
                f"--synthetic {name_or_path!r}: neither a named config ({', '.join(named_configs())}) nor an "
                "existing config json file. Pass one of the names, or the path to a Hugging Face config.json that "
                "has an AWQ quantization_config."
            )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BenchError(f"--synthetic: cannot read {path} as JSON ({e}). Fix the file or pass a named config.") from e
    if not isinstance(config, dict):
        raise BenchError(f"--synthetic: {path} holds no JSON object. Pass a Hugging Face config.json.")
    if name is None:
        name = f"{path.stem}-{config_fingerprint(config)[:8]}"
    gen_path = path.with_name(f"{path.stem}.generation_config.json")
    generation = json.loads(gen_path.read_text(encoding="utf-8")) if gen_path.is_file() else None
    check_config(config, source=str(path))
    return name, config, generation


def check_config(config: dict[str, Any], source: str = "config") -> None:
    """The config must describe a decoder this generator knows, quantized with AWQ GEMM 4-bit."""
    mt = config.get("model_type")
    if mt not in SUPPORTED_MODEL_TYPES:
        raise BenchError(
            f"{source}: model_type {mt!r} is not one the synthetic generator lays out "
            f"({', '.join(SUPPORTED_MODEL_TYPES)}). Use one of those architectures, or a real checkpoint (--model)."
        )
    require_awq(config, source)
    qc = config["quantization_config"]
    g = int(qc.get("group_size", 128))
    for k, n in _linear_shapes(config).values():
        if k % g or n % 8:
            raise BenchError(
                f"{source}: a linear layer of shape in={k}, out={n} does not fit AWQ GEMM with group_size {g} "
                "(in_features must be a multiple of the group size, out_features of 8)."
            )


def _linear_shapes(config: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(in_features K, out_features N) of the seven quantized linears of one layer."""
    h, heads, kv, hd = attention_dims(config)
    inter = int(config["intermediate_size"])
    return {"self_attn.q_proj": (h, heads * hd), "self_attn.k_proj": (h, kv * hd), "self_attn.v_proj": (h, kv * hd),
            "self_attn.o_proj": (heads * hd, h),
            "mlp.gate_proj": (h, inter), "mlp.up_proj": (h, inter), "mlp.down_proj": (inter, h)}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype: I32 | F16
    kind: str  # qweight | qzeros | scales | bias | embedding | lm_head | norm

    @property
    def nbytes(self) -> int:
        return _SAFETENSORS_DTYPE[self.dtype].itemsize * math.prod(self.shape)


def tensor_specs(config: dict[str, Any]) -> list[TensorSpec]:
    """Every tensor of the checkpoint, in save_pretrained's order, with HF names."""
    h, _heads, _kv, hd = attention_dims(config)
    vocab = int(config["vocab_size"])
    mt = config.get("model_type")
    qc = config["quantization_config"]
    g = int(qc.get("group_size", 128))
    not_convert = qc.get("modules_to_not_convert") or []
    qkv_bias = mt == "qwen2" or bool(config.get("attention_bias", False))
    specs = [TensorSpec("model.embed_tokens.weight", (vocab, h), "F16", "embedding")]
    for i in range(int(config["num_hidden_layers"])):
        p = f"model.layers.{i}."
        specs.append(TensorSpec(p + "input_layernorm.weight", (h,), "F16", "norm"))
        for lin, (k, n) in _linear_shapes(config).items():
            if any(m in p + lin for m in not_convert):
                specs.append(TensorSpec(p + lin + ".weight", (n, k), "F16", "dense"))
            else:
                specs.append(TensorSpec(p + lin + ".qweight", (k, n // 8), "I32", "qweight"))
                specs.append(TensorSpec(p + lin + ".qzeros", (k // g, n // 8), "I32", "qzeros"))
                specs.append(TensorSpec(p + lin + ".scales", (k // g, n), "F16", "scales"))
            # qwen2 has q/k/v biases always, o_proj none; the others have all four with attention_bias.
            if (lin in QKV and qkv_bias) or (lin == "self_attn.o_proj" and config.get("attention_bias")
                                             and mt != "qwen2"):
                specs.append(TensorSpec(p + lin + ".bias", (n,), "F16", "bias"))
        if mt == "qwen3":
            specs.append(TensorSpec(p + "self_attn.q_norm.weight", (hd,), "F16", "norm"))
            specs.append(TensorSpec(p + "self_attn.k_norm.weight", (hd,), "F16", "norm"))
        specs.append(TensorSpec(p + "post_attention_layernorm.weight", (h,), "F16", "norm"))
    specs.append(TensorSpec("model.norm.weight", (h,), "F16", "norm"))
    if not config.get("tie_word_embeddings", False):
        specs.append(TensorSpec("lm_head.weight", (vocab, h), "F16", "lm_head"))
    return specs


def checkpoint_nbytes(config: dict[str, Any]) -> int:
    return sum(s.nbytes for s in tensor_specs(config))


def plan_shards(specs: list[TensorSpec], max_shard_bytes: int) -> list[list[TensorSpec]]:
    """Greedy in order, like transformers' shard_checkpoint: a new shard when the next tensor would overflow."""
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for s in specs:
        if shards[-1] and size + s.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(s)
        size += s.nbytes
    return shards


def pack_awq_gemm(values: np.ndarray) -> np.ndarray:
    """int4 values [R, N] (0..15) -> int32 [R, N/8] in AWQ GEMM order (value of column order[i] in bits 4i..)."""
    v = np.asarray(values)
    if v.ndim != 2 or v.shape[1] % 8:
        raise ValueError(f"pack_awq_gemm needs [R, N] with N a multiple of 8, got {v.shape}")
    if v.size and (v.min() < 0 or v.max() > 15):
        raise ValueError("int4 values must lie in 0..15")
    v = v.astype(np.uint32).reshape(v.shape[0], -1, 8)
    packed = np.zeros(v.shape[:2], dtype=np.uint32)
    for i, col in enumerate(AWQ_ORDER):
        packed |= v[:, :, col] << np.uint32(4 * i)
    return packed.view(np.int32)


def tensor_chunks(spec: TensorSpec, seed: int, chunk_bytes: int = CHUNK_BYTES) -> Iterator[np.ndarray]:
    """The tensor's values, row block by row block (C order), each at most ~chunk_bytes."""
    rng = np.random.default_rng([int(seed), zlib.crc32(spec.name.encode())])
    rows, row_elems = spec.shape[0], math.prod(spec.shape[1:])
    itemsize = _SAFETENSORS_DTYPE[spec.dtype].itemsize
    step = max(1, chunk_bytes // max(1, row_elems * itemsize))
    for r0 in range(0, rows, step):
        n = min(step, rows - r0) * row_elems
        if spec.kind == "qweight":
            yield np.frombuffer(rng.bytes(n * 4), dtype="<i4")
        elif spec.kind == "qzeros":
            vals = rng.integers(0, 16, size=(n // row_elems, row_elems * 8), dtype=np.uint8)
            yield pack_awq_gemm(vals).reshape(-1).astype("<i4", copy=False)
        elif spec.kind == "scales":
            yield rng.uniform(SCALE_RANGE[0], SCALE_RANGE[1], size=n).astype("<f2")
        elif spec.kind in ("embedding", "lm_head", "dense"):
            yield (rng.standard_normal(size=n, dtype=np.float32) * EMBED_STD).astype("<f2")
        elif spec.kind == "bias":
            yield np.zeros(n, dtype="<f2")
        elif spec.kind == "norm":
            yield np.ones(n, dtype="<f2")


def _write(f, data) -> None:
    """One write call (module-level so that tests can make it fail like a full disk)."""
    f.write(data)


def _safetensors_header(shard: list[TensorSpec]) -> bytes:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for s in shard:
        header[s.name] = {"dtype": s.dtype, "shape": list(s.shape), "data_offsets": [offset, offset + s.nbytes]}
        offset += s.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def _write_shard(path: Path, shard: list[TensorSpec], seed: int, advance: Callable[[int], None]) -> None:
    with open(path, "wb") as f:
        _write(f, _safetensors_header(shard))
        for spec in shard:
            written = 0
            for chunk in tensor_chunks(spec, seed):
                _write(f, memoryview(np.ascontiguousarray(chunk)).cast("B"))
                written += chunk.nbytes
                advance(chunk.nbytes)
                del chunk  # before the generator makes the next one
            if written != spec.nbytes:  # pragma: no cover - a bug, not a user error
                raise AssertionError(f"{spec.name}: wrote {written} bytes, expected {spec.nbytes}")
        f.flush()
        os.fsync(f.fileno())  # a full disk can first show here, not at write()


def _generation_config(config: dict[str, Any], given: Optional[dict[str, Any]]) -> dict[str, Any]:
    if given is not None:
        return dict(given)
    gc = {"bos_token_id": config.get("bos_token_id"), "eos_token_id": config.get("eos_token_id"), "do_sample": False,
          "transformers_version": config.get("transformers_version", "4.51.3")}
    return {k: v for k, v in gc.items() if v is not None}


def generate_checkpoint(config: dict[str, Any], out_dir: Path, *, seed: int = 0, config_name: str = "custom",
                        generation_config: Optional[dict[str, Any]] = None, max_shard_bytes: Optional[int] = None,
                        progress: bool = True) -> Path:
    """Write a synthetic AWQ checkpoint for `config` into out_dir (new or empty). Raises BenchError (partial output
    removed) on a full disk or any write error."""
    check_config(config, source=f"config {config_name!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise BenchError(
            f"{out_dir} already exists and is not an empty folder. Choose a new --out folder, or remove this one "
            "(a complete synthetic checkpoint holds the marker file " + MARKER + ")."
        )
    specs = tensor_specs(config)
    total = sum(s.nbytes for s in specs)
    # save_pretrained's 5 GB, but never fewer than 2 shards, so the index path is always exercised.
    shards = plan_shards(specs, max_shard_bytes or min(HF_MAX_SHARD_BYTES, total // 2 + 1))
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(parent).free
    if free < total + 16 * 2**20:
        raise BenchError(
            f"Not enough disk space for the synthetic {config_name} checkpoint: it needs {total / 1e9:.2f} GB in "
            f"{parent}, which has {free / 1e9:.2f} GB free. Free some space or point KIT_CACHE_DIR (or --out) at a "
            "larger disk."
        )
    tmp = parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed run with our pid
    tmp.mkdir()
    n = len(shards)
    names = [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    from tqdm.auto import tqdm  # comes with transformers and vLLM

    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"synthetic {config_name}",
               disable=not progress, file=sys.stderr, mininterval=0.5)
    try:
        for name, shard in zip(names, shards, strict=True):
            _write_shard(tmp / name, shard, seed, bar.update)
        index = {"metadata": {"total_size": total},
                 "weight_map": {s.name: name for name, shard in zip(names, shards, strict=True) for s in shard}}
        marker = {"generator_version": GENERATOR_VERSION, "config_name": config_name,
                  "config_sha256": config_fingerprint(config), "seed": seed, "total_size": total, "shards": names}
        for fname, obj in (("model.safetensors.index.json", index), ("config.json", config),
                           ("generation_config.json", _generation_config(config, generation_config)),
                           (MARKER, marker)):
            with open(tmp / fname, "wb") as f:
                _write(f, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())
                f.flush()
                os.fsync(f.fileno())
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        os.rename(tmp, out_dir)
    except BaseException as e:  # Ctrl-C included: no partial checkpoint is left behind
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(e, OSError):
            raise
        why = "the disk filled up" if e.errno in (errno.ENOSPC, errno.EDQUOT) else f"a write failed ({e})"
        raise BenchError(
            f"Writing the synthetic {config_name} checkpoint ({total / 1e9:.2f} GB) under {parent} stopped: {why}; "
            "the partial shards were removed. Check that the folder is writable, free some space or point "
            "KIT_CACHE_DIR (or --out) at a larger disk, then run again."
        ) from e
    finally:
        bar.close()
    return out_dir


def read_marker(path: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def ensure_synthetic(name_or_path: str, cache_dir: Path, *, seed: int = 0, progress: bool = True) -> tuple[str, Path]:
    """(config name, checkpoint folder): generated once into <cache_dir>/synthetic/<name>-<seed>/, then reused;
    a folder without a matching completion marker (interrupted, older generator, changed config) is replaced."""
    name, config, generation = load_config(name_or_path)
    out = Path(cache_dir) / "synthetic" / f"{name}-{seed}"
    marker = read_marker(out)
    want = {"generator_version": GENERATOR_VERSION, "config_sha256": config_fingerprint(config), "seed": seed}
    if marker and all(marker.get(k) == v for k, v in want.items()):
        return name, out
    if out.exists():
        print(f"synthetic: {out} is incomplete or out of date; generating it again", file=sys.stderr)
        shutil.rmtree(out)
    try:
        generate_checkpoint(config, out, seed=seed, config_name=name, generation_config=generation, progress=progress)
    except OSError as e:  # pragma: no cover - another process won the rename race
        if not read_marker(out):
            raise BenchError(f"Could not publish the synthetic checkpoint at {out} ({e}). Remove it and retry.") from e
    return name, out


def synth_main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench synth",
                                description="Write a synthetic Hugging Face-format AWQ checkpoint "
                                            "(random int4 weights).")
    p.add_argument("--config", required=True,
                   help=f"named config ({', '.join(named_configs())}) or the path to a config.json with an AWQ "
                        "quantization_config")
    p.add_argument("--out", required=True, type=Path, help="new (or empty) folder to write")
    p.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    p.add_argument("--max-shard-size", type=float, default=None,
                   help="max shard size in GB (default: save_pretrained's 5 GB, at least 2 shards)")
    p.add_argument("--no-progress", action="store_true")
    ns = p.parse_args(argv)
    name, config, generation = load_config(ns.config)
    total = checkpoint_nbytes(config)
    print(f"synthetic: {name}: {len(tensor_specs(config))} tensors, {total / 1e9:.3f} GB -> {ns.out}", file=sys.stderr)
    generate_checkpoint(config, ns.out, seed=ns.seed, config_name=name, generation_config=generation,
                        max_shard_bytes=int(ns.max_shard_size * 1e9) if ns.max_shard_size else None,
                        progress=not ns.no_progress)
    print(f"synthetic: wrote {ns.out}", file=sys.stderr)
    return 0

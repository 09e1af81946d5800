"""The synthetic checkpoint writer: layout, determinism, reuse, disk-full clean-up, streaming memory."""
from __future__ import annotations

import errno
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import synthetic
from core.errors import BenchError

REPO_ROOT = Path(__file__).resolve().parents[2]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_layout_matches_huggingface_format(stack, tiny_ckpt):
    from safetensors import safe_open

    files = sorted(p.name for p in tiny_ckpt.iterdir())
    shards = [f for f in files if f.endswith(".safetensors")]
    assert len(shards) >= 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert {"config.json", "generation_config.json", "model.safetensors.index.json", synthetic.MARKER} <= set(files)
    config = json.loads((tiny_ckpt / "config.json").read_text())
    assert config == synthetic.load_config("tiny")[1]
    assert config["quantization_config"]["quant_method"] == "awq"
    index = json.loads((tiny_ckpt / "model.safetensors.index.json").read_text())
    specs = {s.name: s for s in synthetic.tensor_specs(config)}
    assert set(index["weight_map"]) == set(specs)
    assert index["metadata"]["total_size"] == sum(s.nbytes for s in specs.values())
    seen = {}
    for shard in shards:
        with safe_open(str(tiny_ckpt / shard), framework="np") as f:
            for key in f.keys():
                t = f.get_tensor(key)
                seen[key] = t
                assert index["weight_map"][key] == shard
                assert tuple(t.shape) == specs[key].shape
    assert set(seen) == set(specs)
    assert seen["model.layers.0.self_attn.q_proj.qweight"].dtype == np.int32
    assert seen["model.layers.0.self_attn.q_proj.qzeros"].dtype == np.int32
    assert seen["model.layers.0.self_attn.q_proj.scales"].dtype == np.float16
    assert seen["model.embed_tokens.weight"].dtype == np.float16
    assert seen["lm_head.weight"].dtype == np.float16
    assert np.all(seen["model.norm.weight"] == 1)
    emb = seen["model.embed_tokens.weight"].astype(np.float32)
    assert 0.015 < emb.std() < 0.025


def test_qwen3_8b_layout_matches_the_real_checkpoint_sizes():
    """FIELD-NOTES: qweight 3.473 GB, scales 0.109, qzeros 0.027, lm_head and embeddings 1.245 GB each."""
    config = synthetic.load_config("qwen3-8b-awq")[1]
    by_kind: dict[str, int] = {}
    for s in synthetic.tensor_specs(config):
        by_kind[s.kind] = by_kind.get(s.kind, 0) + s.nbytes
    assert round(by_kind["qweight"] / 1e9, 3) == 3.473
    assert round(by_kind["scales"] / 1e9, 3) == 0.109
    assert round(by_kind["qzeros"] / 1e9, 3) == 0.027
    assert round(by_kind["lm_head"] / 1e9, 3) == round(by_kind["embedding"] / 1e9, 3) == 1.245
    assert sum(1 for s in synthetic.tensor_specs(config) if s.kind == "qweight") == 36 * 7


def test_same_seed_same_tensors_whatever_the_sharding(stack, tmp_path):
    from safetensors.numpy import load_file

    name, config, gen = synthetic.load_config("tiny")
    a = synthetic.generate_checkpoint(config, tmp_path / "a", seed=3, config_name=name, progress=False)
    b = synthetic.generate_checkpoint(config, tmp_path / "b", seed=3, config_name=name, progress=False,
                                      max_shard_bytes=10**9)
    c = synthetic.generate_checkpoint(config, tmp_path / "c", seed=4, config_name=name, progress=False,
                                      max_shard_bytes=10**9)
    ta = {k: v for f in sorted(a.glob("*.safetensors")) for k, v in load_file(str(f)).items()}
    tb = load_file(str(b / "model-00001-of-00001.safetensors"))
    tc = load_file(str(c / "model-00001-of-00001.safetensors"))
    assert set(ta) == set(tb)
    assert all(np.array_equal(ta[k], tb[k]) for k in ta)
    assert not np.array_equal(ta["model.layers.0.mlp.up_proj.qweight"], tc["model.layers.0.mlp.up_proj.qweight"])


def test_out_dir_must_be_new_or_empty(stack, tmp_path):
    name, config, _ = synthetic.load_config("tiny")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(BenchError, match="not an empty folder"):
        synthetic.generate_checkpoint(config, tmp_path / "x", config_name=name, progress=False)
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def test_disk_full_removes_partial_shards(stack, tmp_path, monkeypatch):
    """ENOSPC in the middle of the second shard: BenchError, and no shard (complete or partial) is left."""
    name, config, _ = synthetic.load_config("tiny")
    real_write = synthetic._write
    written = {"n": 0}
    shards_opened = []

    def write(f, data):
        if f.name not in shards_opened:
            shards_opened.append(f.name)
        if len(shards_opened) >= 2 and written["n"] > 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(f, data)
        if len(shards_opened) >= 2:
            written["n"] += 1

    monkeypatch.setattr(synthetic, "_write", write)
    out = tmp_path / "ckpt"
    with pytest.raises(BenchError) as info:
        synthetic.generate_checkpoint(config, out, config_name=name, progress=False)
    msg = str(info.value)
    assert "disk filled up" in msg and "partial shards were removed" in msg and "KIT_CACHE_DIR" in msg
    assert len(shards_opened) >= 2  # the first shard was complete when the disk filled
    assert not out.exists()
    assert list(tmp_path.rglob("*.safetensors")) == []
    assert list(tmp_path.iterdir()) == []


def test_not_enough_space_is_refused_before_writing(stack, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    name, config, _ = synthetic.load_config("qwen3-8b-awq")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 10**12 - 10**9, 10**9))
    with pytest.raises(BenchError, match=r"needs 6\.10 GB .* 1\.00 GB free"):
        synthetic.generate_checkpoint(config, tmp_path / "big", config_name=name, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_ensure_synthetic_reuses_and_repairs(stack, tmp_path):
    name, path = synthetic.ensure_synthetic("tiny", tmp_path, seed=5, progress=False)
    assert path == tmp_path / "synthetic" / "tiny-5"
    stamp = (path / synthetic.MARKER).stat().st_mtime_ns
    digest = _digest(path / "model-00001-of-00003.safetensors")
    _, again = synthetic.ensure_synthetic("tiny", tmp_path, seed=5, progress=False)
    assert again == path and (path / synthetic.MARKER).stat().st_mtime_ns == stamp  # reused, not rewritten
    (path / synthetic.MARKER).unlink()  # as if interrupted before the marker
    (path / "model-00002-of-00003.safetensors").write_bytes(b"truncated")
    _, repaired = synthetic.ensure_synthetic("tiny", tmp_path, seed=5, progress=False)
    assert synthetic.read_marker(repaired)["seed"] == 5
    assert _digest(repaired / "model-00001-of-00003.safetensors") == digest
    assert (repaired / "model-00002-of-00003.safetensors").stat().st_size > 100


def test_config_path_and_bad_configs(stack, tmp_path):
    cfg = synthetic.load_config("tiny")[1]
    p = tmp_path / "my.json"
    p.write_text(json.dumps(cfg))
    name, loaded, _ = synthetic.load_config(str(p))
    assert loaded == cfg and name.startswith("my-")
    bad = dict(cfg, quantization_config=None)
    p.write_text(json.dumps(bad))
    with pytest.raises(BenchError, match="not an AWQ checkpoint"):
        synthetic.load_config(str(p))
    with pytest.raises(BenchError, match="neither a named config"):
        synthetic.load_config("no-such-config")


def test_synth_cli(stack, tmp_path, kit_env):
    out = tmp_path / "ck"
    cmd = [sys.executable, "-m", "bench", "synth", "--config", "tiny", "--out", str(out), "--no-progress"]
    proc = subprocess.run(cmd,
                          cwd=str(REPO_ROOT), env=kit_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert synthetic.read_marker(out)["config_name"] == "tiny"
    again = subprocess.run([sys.executable, "-m", "bench", "synth", "--config", "tiny", "--out", str(out)],
                           cwd=str(REPO_ROOT), env=kit_env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr


def test_streaming_keeps_peak_memory_far_below_a_shard(stack, tmp_path, kit_env):
    """A ~460 MB checkpoint (2 shards of ~230 MB) is written with a peak RSS far below one shard."""
    cfg = synthetic.load_config("tiny")[1]
    cfg.update(hidden_size=2048, intermediate_size=6144, num_hidden_layers=8, num_attention_heads=16,
               num_key_value_heads=4, vocab_size=32000, bos_token_id=31998, eos_token_id=31999)
    cfg_path = tmp_path / "mid.json"
    cfg_path.write_text(json.dumps(cfg))
    total = synthetic.checkpoint_nbytes(cfg)
    # VmHWM, not getrusage's ru_maxrss: Linux carries the forking parent's (pytest + torch) peak across exec.
    code = ("from bench.synthetic import synth_main; "
            f"synth_main(['--config', {str(cfg_path)!r}, '--out', {str(tmp_path / 'mid')!r}, '--no-progress']); "
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(REPO_ROOT), env=kit_env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    peak = int(proc.stdout.split()[-1]) * 1024
    shards = sorted((tmp_path / "mid").glob("*.safetensors"))
    largest = max(p.stat().st_size for p in shards)
    assert total > 400e6 and largest > 200e6
    assert peak < largest * 0.75, f"peak RSS {peak / 1e6:.0f} MB vs largest shard {largest / 1e6:.0f} MB"

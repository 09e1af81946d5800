"""Torch-free parts of the container side: options, prompt ids, roofline bytes, provenance pins, demo plumbing."""
from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.run import parse_run_args  # noqa: E402
from kit.cli import plan  # noqa: E402
from core.errors import BenchError  # noqa: E402
from core.errors import KitError  # noqa: E402

QWEN = json.loads((REPO_ROOT / "bench" / "configs" / "qwen3-8b-awq.json").read_text())
TINY = json.loads((REPO_ROOT / "bench" / "configs" / "tiny.json").read_text())


# --------------------------------------------------------------------------- options


def check(command: str, argv: list[str]):
    """The workload a command would run, parsed and checked the way the kit does it, once."""
    if command == "run":
        return parse_run_args(argv)
    if command == "demo":
        from kit.cli import demo_parser, demo_workload

        return demo_workload(demo_parser().parse_args(argv))
    return plan(command, argv)[1]


def test_defaults_are_vllm_bench_latency():
    backend, spec = parse_run_args(["--backend", "transformers"])
    assert (spec.input_len, spec.output_len, spec.warmup, spec.iters, spec.seed) == (32, 128, 10, 30, 0)
    assert spec.model == "Qwen/Qwen3-8B-AWQ" and spec.synthetic is None and spec.device == "auto"


def test_bench_error_is_a_kit_error():
    # kit/cli.py catches KitError only: the container side's errors must be KitErrors.
    assert issubclass(BenchError, KitError) and BenchError("x").exit_code == 2


@pytest.mark.parametrize("command, argv, match", [
    ("bench-hf", ["--output-len", "1"], "--output-len must be at least 2"),
    ("bench-hf", ["--input-len", "0"], "--input-len must be at least 1"),
    ("bench-hf", ["--iters", "0"], "--iters must be at least 1"),
    ("bench-hf", ["--warmup", "-1"], "--warmup must be at least 0"),
    ("bench-hf", ["--input-len", "abc"], "must be a whole number"),
    ("bench-hf", ["--device", "tpu"], "invalid choice"),
    ("bench-hf", ["--bogus"], "unrecognized arguments: --bogus"),
    ("bench-hf", ["--quantization", "awq"], "unrecognized arguments: --quantization"),  # vLLM-only
    ("bench-hf", ["--enforce-eager"], "unrecognized arguments: --enforce-eager"),
    ("bench-hf", ["--synthetic", "nope"], "expected one of qwen3-8b-awq, tiny"),
    ("bench-hf", ["--synthetic", "tiny", "--model", "Qwen/Qwen3-8B-AWQ"], "exclusive"),
    ("bench-hf", ["--synthetic", "tiny", "--revision", "main"], "hub models only"),
    ("bench-hf", ["--model", "./no/such/folder"], "no such local folder"),
    ("bench-vllm", ["--device", "cpu"], "need an NVIDIA GPU"),
    ("bench-vllm", ["--max-model-len", "100"], "shorter than --input-len \\+ --output-len"),
    ("bench-vllm", ["--gpu-memory-utilization", "1.5"], "must be in \\(0, 1\\]"),
    ("bench-vllm", ["--quantization", "awq,gptq"], "expected awq, awq_marlin or both"),
    ("demo", ["--output-len", "1"], "--output-len must be at least 2"),
    ("profile", ["--iters", "0"], "--iters must be at least 1"),
    ("run", ["--backend", "vllm", "--synthetic", "tiny", "--quantization", "awq,awq_marlin"], "one vLLM row"),
    ("run", ["--backend", "vllm", "--workload", "{\"input_len\": 8}", "--iters", "3"], "cannot be added"),
    ("run", ["--backend", "vllm", "--workload", "{\"nope\": 1}"], "not a workload spec"),
])
def test_bad_values_are_refused_with_one_paragraph(command, argv, match):
    with pytest.raises(BenchError, match=match) as info:
        check(command, argv)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("command, argv", [
    ("bench-hf", []),
    ("bench-hf", ["--synthetic", "qwen3-8b-awq", "--input-len", "512", "--device", "cuda"]),
    ("bench-hf", ["--model", "Qwen/Qwen3-8B-AWQ", "--revision", "main"]),
    ("bench-vllm", ["--synthetic", "tiny", "--enforce-eager", "--max-model-len", "4096"]),
    ("profile", ["--synthetic", "tiny", "--device", "cpu", "--no-trace"]),  # the profiler's own options pass
    ("demo", ["--synthetic", "tiny", "--device", "cpu"]),
])
def test_good_values_pass(command, argv):
    check(command, argv)


def test_vllm_run_needs_explicit_quantization():
    with pytest.raises(BenchError, match="silently upgrades"):
        parse_run_args(["--backend", "vllm", "--synthetic", "tiny"])
    _, spec = parse_run_args(["--backend", "vllm", "--synthetic", "tiny", "--quantization", "awq_marlin"])
    assert spec.quantization == "awq_marlin"


def test_bench_vllm_plans_one_step_per_row_from_one_parsed_spec():
    ns, steps = plan("bench-vllm", ["--synthetic", "tiny", "--output-len", "16", "--vllm", "0.20"])
    assert [s.workload.quantization for s in steps] == ["awq", "awq_marlin"]
    assert {s.stack for s in steps} == {"vllm-0.20"} and all(s.needs_gpu for s in steps)
    assert {s.workload.replace(quantization=None) for s in steps} == {steps[0].workload.replace(quantization=None)}
    _, (only,) = plan("bench-vllm", ["--quantization", "awq_marlin"])
    assert only.workload.quantization == "awq_marlin"
    _, (cpu,) = plan("bench-hf", ["--device", "cpu"])
    assert not cpu.needs_gpu


def test_the_container_gets_the_spec_the_host_parsed():
    # Handed over as data: the container side's parser reads back exactly what the host checked.
    _, (step,) = plan("bench-hf", ["--synthetic", "tiny", "--iters", "3", "--device", "cpu"])
    argv = step.command()
    assert argv[:5] == ("-m", "bench", "run", "--backend", "transformers") and argv[5] == "--workload"
    backend, spec = parse_run_args(list(argv[3:]))
    assert backend == "transformers" and spec == step.workload


def test_synthetic_config_path_is_accepted(tmp_path):
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps(TINY))
    check("bench-hf", ["--synthetic", str(p)])


def test_local_model_folder_is_not_a_hub_id(tmp_path):
    _, spec = parse_run_args(["--backend", "transformers", "--model", str(tmp_path)])
    assert spec.model == str(tmp_path)


# --------------------------------------------------------------------------- prompt ids


def test_prompt_ids_are_fixed_by_the_seed_alone():
    from bench.workload import prompt_token_ids

    # Golden values: both images (and any Python) must produce exactly these ids.
    assert prompt_token_ids(QWEN, 8, 0) == [71685, 107843, 92397, 117944, 103730, 34555, 485, 23870]
    assert prompt_token_ids(QWEN, 32, 0)[:8] == prompt_token_ids(QWEN, 8, 0)
    assert prompt_token_ids(QWEN, 32, 1) != prompt_token_ids(QWEN, 32, 0)


def test_prompt_ids_avoid_special_tokens_and_stay_in_vocab(tmp_path):
    from bench.workload import prompt_token_ids, regular_vocab_limit

    assert regular_vocab_limit(QWEN) == 151643  # Qwen3: ordinary BPE ids end where <|endoftext|> starts
    ids = prompt_token_ids(QWEN, 4096, 3)
    assert len(ids) == 4096 and max(ids) < 151643 and min(ids) >= 0
    tiny = prompt_token_ids(TINY, 2000, 0)
    assert max(tiny) < 2046 and not {2046, 2047} & set(tiny)
    # added tokens declared by a shipped tokenizer_config.json are avoided too
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": {"5": {}, "7": {}}}))
    small = dict(TINY, vocab_size=16, bos_token_id=14, eos_token_id=15)
    got = prompt_token_ids(small, 500, 0, model_dir=str(tmp_path))
    assert set(got) == set(range(14)) - {5, 7}


def test_lengths_and_awq_checks():
    from bench.workload import check_lengths
    from core.rules import require_awq

    check_lengths(TINY, 1024, 1024, "tiny")
    with pytest.raises(BenchError, match="max_position_embeddings = 2048"):
        check_lengths(TINY, 1024, 1025, "tiny")
    with pytest.raises(BenchError, match="no quantization_config"):
        require_awq({k: v for k, v in TINY.items() if k != "quantization_config"}, "x")
    with pytest.raises(BenchError, match="'gptq', not AWQ"):
        require_awq(dict(TINY, quantization_config={"quant_method": "gptq"}), "x")
    with pytest.raises(BenchError, match="version 'gemv'"):
        require_awq(dict(TINY, quantization_config=dict(TINY["quantization_config"], version="gemv")), "x")


# --------------------------------------------------------------------------- roofline


def _write_header_only_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> None:
    sizes = {"I32": 4, "F16": 2}
    header, off = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = sizes[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * off)


def test_decode_step_bytes_from_checkpoint_headers(tmp_path):
    from bench.roofline import decode_step_bytes, kv_cache_bytes_per_position

    cfg = dict(TINY, num_hidden_layers=1)
    _write_header_only_safetensors(tmp_path / "model-00001-of-00002.safetensors", {
        "model.embed_tokens.weight": ("F16", [2048, 256]),
        "model.layers.0.mlp.up_proj.qweight": ("I32", [256, 64]),
        "model.layers.0.mlp.up_proj.qzeros": ("I32", [2, 64]),
        "model.layers.0.mlp.up_proj.scales": ("F16", [2, 512]),
    })
    _write_header_only_safetensors(tmp_path / "model-00002-of-00002.safetensors", {
        "model.norm.weight": ("F16", [256]),
        "lm_head.weight": ("F16", [2048, 256]),
    })
    total, parts = decode_step_bytes(tmp_path, cfg, 32, 128)
    kv = kv_cache_bytes_per_position(cfg) * (32 + 64)
    assert parts == {"embed_tokens_one_row": 512, "kv_cache_mean_context": kv, "lm_head": 2048 * 512,
                     "norms": 512, "qweight": 256 * 64 * 4, "qzeros": 2 * 64 * 4, "scales": 2 * 512 * 2}
    assert total == sum(parts.values())


def test_qwen3_8b_decode_bytes_match_field_notes(tmp_path):
    """FIELD-NOTES: about 4.85 GB per batch-1 decode step (qweight 3.473 GB, scales 0.109, qzeros 0.027, fp16
    lm_head 1.245, one embedding row). decode_step_bytes reads the checkpoint's safetensors headers: here the
    headers of the full Qwen3-8B-AWQ checkpoint as the generator writes them (shapes and dtypes only; no data)."""
    from bench.roofline import decode_step_bytes, kv_cache_bytes_per_position
    from bench.synthetic import _safetensors_header, plan_shards, tensor_specs

    specs = tensor_specs(QWEN)
    for i, shard in enumerate(plan_shards(specs, 2 * 2**30)):
        (tmp_path / f"model-{i:05d}.safetensors").write_bytes(_safetensors_header(shard))
    total, parts = decode_step_bytes(tmp_path, QWEN, input_len=32, output_len=128)
    gb = {k: round(v / 1e9, 3) for k, v in parts.items()}
    assert gb["qweight"] == 3.473 and gb["scales"] == 0.109 and gb["qzeros"] == 0.027 and gb["lm_head"] == 1.245
    assert parts["embed_tokens_one_row"] == 4096 * 2  # one fp16 row of the 151936 x 4096 embedding
    assert kv_cache_bytes_per_position(QWEN) == 36 * 2 * 8 * 128 * 2
    assert parts["kv_cache_mean_context"] == kv_cache_bytes_per_position(QWEN) * (32 + 128 // 2)
    assert round((total - parts["kv_cache_mean_context"]) / 1e9, 2) == 4.85
    assert total == sum(parts.values()) and "embed_tokens" not in parts  # the full embedding is not read per step


# --------------------------------------------------------------------------- provenance


def test_deviations_list_every_difference():
    from bench.provenance import deviations

    pins = {"python": "3.12", "torch": "2.9.1", "transformers": "4.51.3", "autoawq": "0.2.9"}
    libs = {"torch": "2.11.0", "transformers": "4.51.3", "autoawq": None}
    assert deviations(pins, libs, "3.12.3") == ["torch 2.11.0 (pinned 2.9.1)", "autoawq not installed (pinned 0.2.9)"]
    assert deviations(pins, dict(libs, torch="2.9.1", autoawq="0.2.9"), "3.11.2") == ["python 3.11.2 (pinned 3.12)"]


def test_pins_follow_the_image_lock(tmp_path, monkeypatch):
    from bench import provenance

    lock = tmp_path / "images" / "hf" / "requirements.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("torch==2.9.1 \\\n    --hash=sha256:abc\ntransformers==4.51.3 \\\n    --hash=sha256:def\n"
                    "autoawq==0.2.9\n")
    assert provenance.lock_versions("hf", tmp_path) == {"torch": "2.9.1", "transformers": "4.51.3", "autoawq": "0.2.9"}
    assert provenance.stack_pins("hf", tmp_path) == (provenance.lock_versions("hf", tmp_path),
                                                      "images/hf/requirements.lock")


def test_provenance_reads_the_env_contract(monkeypatch):
    from bench.provenance import collect_provenance

    monkeypatch.setenv("KIT_GIT_COMMIT", "c0ffee")
    monkeypatch.setenv("KIT_GIT_DIRTY", "1")
    monkeypatch.setenv("KIT_RUNNER", "docker")
    monkeypatch.setenv("KIT_IMAGE_ID", "sha256:123")
    monkeypatch.setenv("KIT_IMAGE_TAG", "awq-kit/hf:abc")
    monkeypatch.setenv("KIT_LOCK_HASH", "deadbeef")
    monkeypatch.setenv("KIT_LABEL", "reference run")
    p = collect_provenance("hf", "cpu")
    assert (p.kit_commit, p.kit_dirty, p.runner, p.image_id, p.image_tag, p.lock_hash, p.label) == (
        "c0ffee", True, "docker", "sha256:123", "awq-kit/hf:abc", "deadbeef", "reference run")
    assert p.gpu is None and p.pins["transformers"] == "4.51.3"
    assert set(p.libraries) >= {"torch", "transformers", "autoawq", "triton", "vllm"}


# --------------------------------------------------------------------------- demo


def test_demo_workload_and_steps(tmp_path):
    from kit.cli import DEMO_WORKLOAD, demo_parser, demo_steps, demo_workload

    spec = demo_workload(demo_parser().parse_args(["--output-len=16", "--iters", "2"]))
    assert (spec.output_len, spec.iters, spec.synthetic, spec.device) == (16, 2, "tiny", "cpu")
    assert spec.warmup == DEMO_WORKLOAD["warmup"]
    assert demo_workload(demo_parser().parse_args(["--model", str(tmp_path)])).synthetic is None
    steps = demo_steps(spec)
    assert [s.argv for s in steps] == [("-m", "bench", "run", "--backend", "transformers"), ("profile/run_profile.py",)]
    assert (REPO_ROOT / steps[1].argv[0]).is_file()
    assert not any(s.needs_gpu for s in steps) and all(s.workload == spec for s in steps)
    assert DEMO_WORKLOAD["device"] == "cpu"


def test_demo_never_writes_into_results_or_reports():
    from kit.cli import run_demo

    for folder in ("results", "reports", "results/sub"):
        with pytest.raises(KitError, match="never writes there"):
            run_demo(["--demo-dir", str(REPO_ROOT / folder)])

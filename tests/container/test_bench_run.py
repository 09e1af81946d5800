"""`python -m bench run --backend transformers` end to end on CPU, timing by definition, and bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.api import IterationProgress, ResolvedModel

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = ["run", "--backend", "transformers", "--synthetic", "tiny", "--device", "cpu"]


def _results(env) -> list[Path]:
    d = Path(env["KIT_RESULTS_DIR"])
    return sorted(d.glob("*.json")) if d.exists() else []


def test_end_to_end_result_validates(stack, tiny_ckpt, run_bench, kit_env):
    from core.results import harness_overhead_text, load_result

    from bench.roofline import tensor_sizes
    from bench.workload import prompt_token_ids

    n, warm, iters = 12, 1, 3
    proc = run_bench(*TINY, "--input-len", "16", "--output-len", str(n), "--warmup", str(warm), "--iters", str(iters),
                     "--seed", "4")
    assert proc.returncode == 0, proc.stderr
    assert f"measured {iters}/{iters}" in proc.stderr and "wrote" in proc.stderr
    [path] = _results(kit_env)
    r = load_result(path)
    assert path.name.startswith("bench-transformers-cpu-2")
    w = r.workload
    assert (w.model, w.model_source, w.synthetic, w.synthetic_config) == ("synthetic:tiny", "synthetic", True, "tiny")
    assert (w.input_len, w.output_len, w.warmup, w.iterations, w.seed, w.batch_size) == (16, n, warm, iters, 4, 1)
    b = r.backend
    assert (b.name, b.label, b.device, b.dtype) == ("transformers", "transformers", "cpu", "float16")
    assert b.settings["awq_kernel_path"].startswith("naive")
    assert b.settings["awq_calls_first_generate"] == {"naive.dequantize_gemm": 14 * n}  # 14 AWQ linears x N forwards
    assert b.settings["grad_mode"] == "torch.inference_mode"
    s = r.samples
    assert len(s.ttft_ms) == len(s.tpot_ms) == len(s.e2e_ms) == len(s.itl_ms) == iters
    for ttft, tpot, e2e, gaps in zip(s.ttft_ms, s.tpot_ms, s.e2e_ms, s.itl_ms, strict=True):
        assert len(gaps) == n - 1 and all(g >= 0 for g in gaps)
        assert e2e == pytest.approx(ttft + sum(gaps), rel=1e-9)
        assert tpot == pytest.approx((e2e - ttft) / (n - 1), rel=1e-9)
    assert r.summary.tpot_ms.n == iters and r.summary.itl_ms.n == iters * (n - 1)
    # The harness-overhead baseline: one bare generate() per measured iteration, logged as it is reported.
    assert len(s.bare_generate_ms) == len(s.instrumented_generate_ms) == iters and min(s.bare_generate_ms) > 0
    assert all(wall >= e2e for wall, e2e in zip(s.instrumented_generate_ms, s.e2e_ms, strict=True))
    logged = harness_overhead_text(s.instrumented_generate_ms, s.bare_generate_ms)
    assert logged and f"harness overhead: {logged}" in proc.stderr  # the report's wording, from core
    assert r.summary.ttft_ms.median == pytest.approx(sorted(s.ttft_ms)[1])
    p = r.provenance
    assert p.runner == "local" and p.gpu is None and p.libraries["transformers"] and p.libraries["torch"]
    assert p.pins["transformers"] == "4.51.3" and p.pins["autoawq"] == "0.2.9"
    # Every run records the machine that measured it; a CPU run has no GPU, so no run conditions (issue 17 item 4).
    assert p.host is not None and p.host.cpu_cores >= 1 and p.host.hostname and p.host.boot_id
    assert r.conditions is None
    for name in ("torch", "transformers", "autoawq"):
        assert (p.libraries[name] != p.pins[name]) == any(d.startswith(name + " ") for d in p.deviations)
    ckpt = Path(kit_env["KIT_CACHE_DIR"]) / "synthetic" / "tiny-0"
    weights = sum(tensor_sizes(ckpt).values())
    emb = 2048 * 256 * 2
    assert r.roofline.bytes_breakdown["embed_tokens_one_row"] == 256 * 2
    kv = r.roofline.bytes_breakdown["kv_cache_mean_context"]
    assert r.roofline.bytes_per_decode_step == weights - emb + 256 * 2 + kv
    assert r.roofline.bandwidth_gb_s is None  # no GPU
    assert any("CPU run" in note for note in r.notes) and any("Synthetic weights" in note for note in r.notes)
    # The bench's prompt comes from the seed alone: another interpreter (another hash seed) draws the same ids, and
    # another seed draws others.
    config = json.loads((ckpt / "config.json").read_text())
    ours = prompt_token_ids(config, 16, 4)
    code = ("import json, sys; from bench.workload import prompt_token_ids; "
            "print(json.dumps(prompt_token_ids(json.load(open(sys.argv[1])), 16, 4)))")
    other = subprocess.run([sys.executable, "-c", code, str(ckpt / "config.json")], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONHASHSEED="12345"), check=True)
    assert json.loads(other.stdout) == ours and len(ours) == 16
    assert prompt_token_ids(config, 16, 5) != ours


@pytest.fixture(scope="module")
def loaded(tiny_ckpt):
    from bench.hf_backend import load_awq_model

    config = json.loads((tiny_ckpt / "config.json").read_text())
    rm = ResolvedModel(path=str(tiny_ckpt), model_id="synthetic:tiny", source="synthetic", synthetic_config="tiny",
                       config=config)
    model, _ = load_awq_model(rm, "cpu", progress=False)
    return model, config, rm


def test_exactly_n_tokens_even_when_eos_comes_first(loaded):
    """Make the first greedy token the EOS: plain generate() stops after 1 token, the bench's makes exactly N."""
    import torch

    from bench.hf_backend import _generation_config, generate_timed

    model, config, _ = loaded
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.inference_mode():
        first = int(model(ids).logits[0, -1].argmax())
    cfg = dict(config, eos_token_id=first)
    plain = _generation_config(cfg, 10)
    plain.min_new_tokens = None
    with torch.inference_mode():
        stopped = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=plain)
    assert stopped.shape[-1] == ids.shape[-1] + 1  # EOS ended it: the check below is meaningful
    for n in (2, 10, 33):
        rec = generate_timed(model, ids, _generation_config(cfg, n), "cpu")
        assert len(rec["tokens"]) == n and len(rec["itl_ms"]) == n - 1
        assert first not in rec["tokens"]  # min_new_tokens masks EOS until the N-th token


def test_ttft_and_tpot_follow_their_definitions(loaded, monkeypatch):
    """With a scripted clock: TTFT = first token - submit; gaps; TPOT = (e2e - TTFT) / (N - 1)."""
    import torch

    import bench.hf_backend as hb

    model, config, _ = loaded
    n = 6
    # submit at 10.000 s; tokens at 10.250, then gaps of 20, 30, 40, 50, 60 ms; generate() returned at 10.460
    clock = iter([10.000, 10.250, 10.270, 10.300, 10.340, 10.390, 10.450, 10.460])
    monkeypatch.setattr(hb.time, "perf_counter", lambda: next(clock))
    rec = hb.generate_timed(model, torch.tensor([[1, 2, 3]]), hb._generation_config(config, n), "cpu")
    assert rec["ttft_ms"] == pytest.approx(250.0)
    assert rec["itl_ms"] == pytest.approx([20.0, 30.0, 40.0, 50.0, 60.0])
    assert rec["e2e_ms"] == pytest.approx(450.0)
    assert rec["tpot_ms"] == pytest.approx((450.0 - 250.0) / (n - 1))
    assert rec["generate_ms"] == pytest.approx(460.0)  # the instrumented call, compared with a bare one
    with pytest.raises(StopIteration):
        next(clock)  # exactly one reading per generated token, plus the submit and the return


def test_measure_counts_warmup_and_iterations(loaded):
    import argparse

    from bench.hf_backend import measure
    from core.results import Workload

    _model, _config, rm = loaded
    w = Workload(model=rm.model_id, model_source="synthetic", synthetic=True, synthetic_config="tiny", input_len=8,
                 output_len=5, warmup=2, iterations=3, seed=0)
    progress = IterationProgress(total=3, warmup_total=2)
    m = measure(w, rm, [1, 2, 3, 4, 5, 6, 7, 8], argparse.Namespace(device="cpu", progress=False), progress)
    assert (progress.warmup_done, progress.done) == (2, 3)
    assert len(m.ttft_ms) == 3 and all(len(g) == 4 for g in m.itl_ms)
    assert m.backend.settings["greedy_tokens_identical_across_runs"] is True
    assert not hasattr(m, "cuda_event_tpot_ms")


def test_each_measured_generate_is_followed_by_a_bare_twin(loaded, monkeypatch):
    """A spy around the real model's generate(): the baseline runs the same inputs, generation config and grad
    mode as the measured run right before it, without streamer or logits processor; progress counts the pair."""
    import argparse

    import torch

    import bench.hf_backend as hb
    from core.results import Workload

    _model, _config, rm = loaded
    calls, real_load = [], hb.load_awq_model
    progress = IterationProgress(total=2, warmup_total=1)

    def load_with_generate_spy(*a, **k):
        model, info = real_load(*a, **k)
        real_generate = model.generate

        def generate_spy(input_ids, **kwargs):
            calls.append({"instrumented": kwargs.get("streamer") is not None or "logits_processor" in kwargs,
                          "ids": input_ids.tolist(), "mask": kwargs["attention_mask"].tolist(),
                          "config": model.generation_config.to_json_string(),
                          "inference_mode": torch.is_inference_mode_enabled(), "done": progress.done})
            return real_generate(input_ids, **kwargs)

        model.generate = generate_spy
        return model, info

    monkeypatch.setattr(hb, "load_awq_model", load_with_generate_spy)
    w = Workload(model=rm.model_id, model_source="synthetic", synthetic=True, synthetic_config="tiny", input_len=4,
                 output_len=5, warmup=1, iterations=2, seed=0)
    m = hb.measure(w, rm, [1, 2, 3, 4], argparse.Namespace(device="cpu", progress=False), progress)
    assert [c["instrumented"] for c in calls] == [True, True, False, True, False]  # warm-up, then pairs
    assert [c["done"] for c in calls] == [0, 0, 0, 1, 1]  # progress moves between pairs, not during one
    assert all(c["inference_mode"] for c in calls)
    assert len({(str(c["ids"]), str(c["mask"]), c["config"]) for c in calls}) == 1
    assert len(m.bare_generate_ms) == len(m.instrumented_generate_ms) == 2


# --------------------------------------------------------------------------- bad input


def _no_traceback(proc):
    assert "Traceback" not in proc.stderr, proc.stderr


def test_output_len_beyond_max_positions_fails_before_loading(stack, run_bench, kit_env, tmp_path):
    env = dict(kit_env, KIT_CACHE_DIR=str(tmp_path / "fresh-cache"))
    proc = run_bench(*TINY, "--output-len", "5000", env=env)
    assert proc.returncode == 2
    _no_traceback(proc)
    assert "max_position_embeddings = 2048" in proc.stderr and "nothing was loaded" in proc.stderr
    assert not (tmp_path / "fresh-cache" / "synthetic").exists()  # no checkpoint generated
    assert _results(env) == []


def test_offline_unknown_model_id(stack, run_bench, kit_env):
    proc = run_bench("run", "--backend", "transformers", "--model", "no-such-org/no-such-model-awq", "--device", "cpu")
    assert proc.returncode == 2
    _no_traceback(proc)
    assert "HF_HUB_OFFLINE is set" in proc.stderr and "no-such-org/no-such-model-awq" in proc.stderr
    assert "--synthetic qwen3-8b-awq" in proc.stderr
    assert _results(kit_env) == []


def test_non_awq_checkpoint_via_cli(stack, run_bench, kit_env, tmp_path):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from bench.synthetic import load_config

    cfg = dict(load_config("tiny")[1])
    cfg.pop("quantization_config")
    Qwen3ForCausalLM(Qwen3Config(**cfg)).to(torch.float16).save_pretrained(tmp_path / "plain")
    proc = run_bench("run", "--backend", "transformers", "--model", str(tmp_path / "plain"), "--device", "cpu")
    assert proc.returncode == 2
    _no_traceback(proc)
    assert "is not an AWQ checkpoint" in proc.stderr
    assert _results(kit_env) == []


def test_ctrl_c_during_iterations_writes_nothing(stack, tiny_ckpt, kit_env):
    proc = subprocess.Popen([sys.executable, "-m", "bench", *TINY, "--warmup", "0", "--iters", "500",
                             "--output-len", "16"], cwd=str(REPO_ROOT), env=kit_env, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    seen = []
    deadline = time.monotonic() + 240
    try:
        for line in proc.stderr:
            seen.append(line)
            if "measured 2/500" in line:
                proc.send_signal(signal.SIGINT)
                break
            assert time.monotonic() < deadline, "".join(seen)
        rest = proc.stderr.read()
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 130, "".join(seen) + rest
    assert "Traceback" not in rest
    import re

    m = re.search(r"interrupted after (\d+) of 500 measured iterations", rest)
    assert m and 2 <= int(m.group(1)) < 500, rest
    assert "no result file was written" in rest
    assert _results(kit_env) == []
    results_dir = Path(kit_env["KIT_RESULTS_DIR"])
    assert not results_dir.exists() or not list(results_dir.glob(".*.tmp"))

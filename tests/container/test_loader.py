"""The tiny synthetic checkpoint through the real loader (transformers' layer swap + autoawq's WQLinear_GEMM)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.api import ResolvedModel
from core.errors import BenchError


def _resolved(path: Path, source: str = "synthetic") -> ResolvedModel:
    return ResolvedModel(path=str(path), model_id=path.name, source=source,
                         config=json.loads((path / "config.json").read_text()))


@pytest.fixture(scope="module")
def awq_model(tiny_ckpt):
    from bench.hf_backend import load_awq_model

    return load_awq_model(_resolved(tiny_ckpt), "cpu", progress=False)


def _reference_fp16(ckpt: Path):
    """A plain fp16 Qwen3 carrying autoawq's own dequantization of every AWQ linear."""
    import torch
    from awq.utils.packing_utils import dequantize_gemm
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(ckpt)
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float16).eval()
    tensors = {}
    for f in sorted(ckpt.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    g = json.loads((ckpt / "config.json").read_text())["quantization_config"]["group_size"]
    state = {}
    for name, t in tensors.items():
        if name.endswith(".qweight"):
            base = name[: -len(".qweight")]
            w = dequantize_gemm(t, tensors[base + ".qzeros"], tensors[base + ".scales"], 4, g)  # [K, N] fp16
            state[base + ".weight"] = w.t().contiguous()
        elif not name.endswith((".qzeros", ".scales")):
            state[name] = t
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)
    return model


def test_loads_with_awq_layers_and_naive_path(awq_model, tiny_ckpt):
    from awq.modules.linear.gemm import WQLinear_GEMM

    model, info = awq_model
    config = json.loads((tiny_ckpt / "config.json").read_text())
    awq_layers = [m for m in model.modules() if isinstance(m, WQLinear_GEMM)]
    assert len(awq_layers) == info["awq_linear_layers"] == 7 * config["num_hidden_layers"]
    assert type(model.lm_head).__name__ == "Linear"  # kept in fp16, as transformers' AwqQuantizer does
    assert info["awq_kernel_state"] == "naive" and info["dtype"] == "float16"
    assert not any(t.is_meta for t in model.state_dict().values())


# Both models run the same fp16 ops, but the CPU's matmul kernels block their accumulation differently from one
# machine to the next (AVX2 vs AVX-512, oneDNN vs reference), so the last bits differ by a few roundings per
# layer: 2.5 ulps was seen on one machine, 0 on another. A wrong packing, order or zero point moves logits by the
# order of the logits themselves, thousands of ulps, so 8 ulps still tells the two apart.
FP16_ULPS_ALLOWED = 8


def _max_error_in_fp16_ulps(ours, theirs) -> float:
    """max |ours - theirs| per position, in fp16 ulps of that position's largest |logit| (the scale its error has)."""
    import torch

    scale = theirs.abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float16).tiny)
    ulp = torch.finfo(torch.float16).eps * torch.exp2(torch.floor(torch.log2(scale)))
    return ((ours - theirs).abs() / ulp).max().item()


def test_fp16_ulp_measure_detects_a_one_code_change():
    """The ulp yardstick itself: 1 ulp at 0.5 is 2**-11, so a 10% error there is about 102 ulps."""
    import torch

    a = torch.tensor([[0.5, -0.25, 0.1]])
    assert _max_error_in_fp16_ulps(a + 2**-11, a) == pytest.approx(1.0)
    assert _max_error_in_fp16_ulps(a * 1.1, a) == pytest.approx(0.05 / 2**-11, rel=1e-3)
    assert _max_error_in_fp16_ulps(a * 1.1, a) > 10 * FP16_ULPS_ALLOWED


def test_logits_match_fp16_model_with_dequantized_weights(awq_model, tiny_ckpt):
    import torch

    from bench.hf_backend import observe_awq_calls
    from bench.workload import prompt_token_ids

    model, _ = awq_model
    ref = _reference_fp16(tiny_ckpt)
    config = json.loads((tiny_ckpt / "config.json").read_text())
    ids = torch.tensor([prompt_token_ids(config, 24, seed=1)])
    with torch.inference_mode(), observe_awq_calls() as calls:
        ours = model(ids).logits.float()
    with torch.inference_mode():
        theirs = ref(ids).logits.float()
    assert calls == {"naive.dequantize_gemm": 7 * config["num_hidden_layers"]}
    assert torch.isfinite(ours).all()
    scale = theirs.abs().max().item()
    assert scale > 0.1  # not a degenerate model
    worst = _max_error_in_fp16_ulps(ours, theirs)
    print(f"max |logit difference| = {worst:.2f} fp16 ulps of the row's largest logit")
    assert worst <= FP16_ULPS_ALLOWED, f"{worst:.2f} ulps > {FP16_ULPS_ALLOWED}: not the same weights"
    # greedy continuations agree token for token
    from bench.hf_backend import _generation_config

    gc = _generation_config(config, 16)
    with torch.inference_mode():
        a = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gc)
        b = ref.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gc)
    assert a.tolist() == b.tolist()


def test_naive_path_is_forced_even_when_triton_is_importable(tiny_ckpt, monkeypatch):
    """The HF image has triton: autoawq would take its Triton path and crash on CPU tensors."""
    import torch
    from awq.modules.linear import gemm

    from bench.hf_backend import awq_kernel_state, load_awq_model, observe_awq_calls

    monkeypatch.setattr(gemm, "TRITON_AVAILABLE", True)
    if not hasattr(gemm, "awq_gemm_triton"):  # no triton here: a stand-in that must never be called
        def _triton_called(*a, **k):
            raise AssertionError("Triton path taken on CPU")
        monkeypatch.setattr(gemm, "awq_gemm_triton", _triton_called, raising=False)
        monkeypatch.setattr(gemm, "awq_dequantize_triton", _triton_called, raising=False)
    assert awq_kernel_state() == "triton"
    model, info = load_awq_model(_resolved(tiny_ckpt), "cpu", progress=False)
    assert info["awq_kernel_state_before"] == "triton" and info["awq_kernel_state"] == "naive"
    with torch.inference_mode(), observe_awq_calls() as calls:
        model(torch.tensor([[1, 2, 3]]))
    assert set(calls) == {"naive.dequantize_gemm"}


@pytest.fixture(scope="module")
def plain_checkpoint(tmp_path_factory, stack):
    """A real, non-quantized tiny Qwen3 written by transformers' save_pretrained."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from bench.synthetic import load_config

    cfg = dict(load_config("tiny")[1])
    cfg.pop("quantization_config")
    out = tmp_path_factory.mktemp("plain")
    Qwen3ForCausalLM(Qwen3Config(**cfg)).to(torch.float16).save_pretrained(out)
    return out


def test_non_awq_checkpoint_is_refused(plain_checkpoint):
    from bench.hf_backend import load_awq_model

    with pytest.raises(BenchError, match="not an AWQ checkpoint.*no quantization_config"):
        load_awq_model(_resolved(plain_checkpoint, "local"), "cpu")


def test_other_quantization_is_refused(plain_checkpoint, tmp_path):
    import shutil

    from bench.hf_backend import load_awq_model

    gptq = tmp_path / "gptq"
    shutil.copytree(plain_checkpoint, gptq)
    cfg = json.loads((gptq / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "gptq", "bits": 4}
    (gptq / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BenchError, match="quantized with 'gptq', not AWQ"):
        load_awq_model(_resolved(gptq, "local"), "cpu")


def test_damaged_checkpoint_names_missing_tensors(tiny_ckpt, tmp_path):
    import shutil

    from bench.hf_backend import load_awq_model

    broken = tmp_path / "broken"
    shutil.copytree(tiny_ckpt, broken)
    last = sorted(broken.glob("*.safetensors"))[-1]
    last.unlink()
    with pytest.raises(BenchError, match="tensors missing"):
        load_awq_model(_resolved(broken), "cpu", progress=False)

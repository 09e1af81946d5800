"""The bench decodes greedily even when the checkpoint's generation_config.json asks for sampling.

Qwen3's own generation_config.json sets do_sample=True, temperature 0.6, top_k 20, top_p 0.95.
transformers 4.51.3 replaces default-valued fields of a generation_config passed to generate()
with the checkpoint's, so a naive `generate(generation_config=GenerationConfig(do_sample=False))`
samples. Seen on an H200 before the fix: two runs of the same prompt gave different tokens.
"""
from __future__ import annotations

import json
import shutil

from bench.api import ResolvedModel

QWEN3_SAMPLING = {"bos_token_id": 2046, "eos_token_id": 2047, "do_sample": True, "temperature": 0.6,
                  "top_k": 20, "top_p": 0.95, "transformers_version": "4.51.3"}


def test_generation_is_greedy_despite_a_sampling_generation_config(tiny_ckpt, tmp_path):
    import torch

    from bench.hf_backend import _generation_config, generate_timed, load_awq_model

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpt, ckpt)
    (ckpt / "generation_config.json").write_text(json.dumps(QWEN3_SAMPLING))
    config = json.loads((ckpt / "config.json").read_text())
    rm = ResolvedModel(path=str(ckpt), model_id="synthetic:tiny", source="synthetic", config=config)
    model, _ = load_awq_model(rm, "cpu", progress=False)
    # from_pretrained (the GPU loader) attaches the checkpoint's generation config; the CPU recipe
    # builds the model from its config, so attach it the same way here.
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig.from_pretrained(ckpt)
    assert model.generation_config.do_sample is True  # the checkpoint really asks for sampling

    n = 8
    input_ids = torch.tensor([[5, 9, 17, 33, 65, 129, 257, 513]])
    runs = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        runs.append(generate_timed(model, input_ids, _generation_config(config, n), "cpu")["tokens"])

    # Reference: argmax decoding by hand with the KV cache.
    with torch.inference_mode():
        out = model(input_ids=input_ids, use_cache=True)
        tokens = [int(out.logits[0, -1].argmax())]
        for _ in range(n - 1):
            out = model(input_ids=torch.tensor([[tokens[-1]]]), past_key_values=out.past_key_values, use_cache=True)
            tokens.append(int(out.logits[0, -1].argmax()))
    assert runs[0] == runs[1] == tokens

#!/usr/bin/env bash
# The labelled GPU reference run (issue 6), through the kit's own entry points, on a GPU host
# WITHOUT Docker or network: the pinned transformers 4.51.3 / autoawq 0.2.9 come as wheels in .whl/
# (README, "GPU reference run"), torch is whatever the host has (recorded as a deviation).
#
#   KIT_GIT_COMMIT=... KIT_GIT_DIRTY=0|1 tools/gpu-reference-run.sh OUTDIR [smoke|vllm]
#
# `vllm` runs the vLLM rows' reference runs instead (tools/gpu-vllm-reference-run.sh: vLLM 0.20.0 from wheels,
# the four configurations base32 base512 async32 eager32).
#
# The device copy of the checkout has no .git, so pass the commit (and dirty flag) in the environment:
# every result records them.
#
# Writes OUTDIR/log.txt and OUTDIR/{results,reports,output}.tar.gz (results JSONs, reports, traces).
set -euo pipefail
out=${1:?usage: tools/gpu-reference-run.sh OUTDIR [smoke|vllm]}
mode=${2:-full}
if [ "$mode" = vllm ]; then
  exec "$(dirname "$0")/gpu-vllm-reference-run.sh" "$out" base32 base512 async32 eager32
fi
mkdir -p "$out"
exec > >(tee -a "$out/log.txt") 2>&1
# The device tool returns at most 8 files: pack what was written, even after a failure.
pack() { for d in results reports output; do [ -d "$out/$d" ] && tar -C "$out" -czf "$out/$d.tar.gz" "$d" && rm -rf "${out:?}/$d"; done; true; }
trap pack EXIT

if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export HF_HUB_OFFLINE=1 KIT_CACHE_DIR=${KIT_CACHE_DIR:-/tmp/kit-cache} PYTHONUNBUFFERED=1
label="reference run: synthetic Qwen3-8B-AWQ weights, local runner, pinned transformers/autoawq wheels on the host's torch"
common=(--runner local --results-dir "$out/results" --reports-dir "$out/reports" --output-dir "$out/output" --label "$label")

nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv
python3 -c 'import torch, transformers, awq, triton; print("torch", torch.__version__, "triton", triton.__version__, "transformers", transformers.__version__, "autoawq", awq.__version__)'

step() { echo; echo "=== $(date -u +%H:%M:%S) $*"; }

if [ "$mode" = smoke ]; then
  step "smoke: tiny synthetic checkpoint, bench + profile"
  python3 -m kit bench-hf "${common[@]}" -- --synthetic tiny --warmup 1 --iters 2 --output-len 8
  python3 -m kit profile "${common[@]}" -- --synthetic tiny --warmup 1
  exit 0
fi

ITERS=${ITERS:-10} WARMUP=${WARMUP:-3}
step "bench-hf, default workload (input 32, output 128), run 1"
python3 -m kit bench-hf "${common[@]}" --no-report -- --synthetic qwen3-8b-awq --warmup "$WARMUP" --iters "$ITERS"
step "bench-hf, default workload, run 2 (run-to-run spread)"
python3 -m kit bench-hf "${common[@]}" --no-report -- --synthetic qwen3-8b-awq --warmup "$WARMUP" --iters "$ITERS"
step "bench-hf, input 512"
python3 -m kit bench-hf "${common[@]}" --no-report -- --synthetic qwen3-8b-awq --input-len 512 --warmup "$WARMUP" --iters "$ITERS"
step "profile-t4: cold + warm prefill, decode step"
python3 -m kit profile "${common[@]}" -- --synthetic qwen3-8b-awq --warmup 3
step "done"

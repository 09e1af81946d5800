#!/usr/bin/env bash
# vLLM 0.20.0 reference runs (issue 9), through the kit's own entry points, on a GPU host WITHOUT Docker or network
# whose own Python has torch 2.11 (CUDA 13): vLLM 0.20.0 is pinned to torch 2.11.0, so only its 22 wheels
# (../shared/device-vllm-0.20.requirements.txt, 285 MiB) are installed into /tmp/vsite from WHEELS_DIR, on the host's
# torch. The study's own vLLM 0.12.0 / torch 2.9.0 lock runs there too, from a wheelhouse:
# tools/gpu-study-stacks-run.sh (which calls this script for its v020-base32 run, in the same lease).
#
#   KIT_GIT_COMMIT=... KIT_GIT_DIRTY=0|1 [WHEELS_DIR=DIR] tools/gpu-vllm-reference-run.sh OUTDIR RUN...
#
# RUN is one or more of:
#   base32    both rows, the study configuration (CUDA graphs on, async scheduling off), input 32, output 128
#   base512   the same at input 512
#   async32   both rows with --async-scheduling on (vLLM 0.20's own default), input 32
#   eager32   both rows with --enforce-eager (no torch.compile, no CUDA graphs), input 32
# Each is `python -m kit bench-vllm --vllm 0.20 --runner local` with warm-up 3 and 10 iterations (WARMUP, ITERS).
# The device copy of the checkout has no .git, so pass the commit (and dirty flag): every result records them.
# Writes OUTDIR/log.txt and OUTDIR/results-<RUN>.tar.gz per run (the device tool returns at most 8 files).
set -euo pipefail
out=${1:?usage: tools/gpu-vllm-reference-run.sh OUTDIR RUN...}
shift
[ $# -gt 0 ] || { echo "name at least one RUN: base32 base512 async32 eager32" >&2; exit 2; }
mkdir -p "$out"
exec > >(tee -a "$out/log.txt") 2>&1

wheels=${WHEELS_DIR:-/tmp/stage/.vllm-wheels/tree}
if [ ! -f /tmp/vsite/.kit-installed ]; then
  ls "$wheels"/vllm-0.20.0-*.whl >/dev/null || { echo "no vllm 0.20.0 wheel in $wheels (stage it first)" >&2; exit 2; }
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/vsite "$wheels"/*.whl
  touch /tmp/vsite/.kit-installed
fi
export PYTHONPATH=/tmp/vsite HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 PYTHONUNBUFFERED=1
export KIT_CACHE_DIR=${KIT_CACHE_DIR:-/tmp/kit-cache}
label="reference run: vLLM 0.20.0 wheels on the host's torch 2.11 (the study pinned 0.12.0 / torch 2.9.0), \
synthetic Qwen3-8B-AWQ weights, local runner"

nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv
python3 -c 'import torch, vllm, transformers; print("torch", torch.__version__, "vllm", vllm.__version__, "transformers", transformers.__version__)'

ITERS=${ITERS:-10} WARMUP=${WARMUP:-3}
for run in "$@"; do
  case "$run" in
    base32) extra=() ;;
    base512) extra=(--input-len 512) ;;
    async32) extra=(--async-scheduling on) ;;
    eager32) extra=(--enforce-eager) ;;
    *) echo "unknown RUN $run" >&2; exit 2 ;;
  esac
  echo; echo "=== $(date -u +%H:%M:%S) bench-vllm $run"
  t0=$(date +%s)
  rc=0
  python3 -m kit bench-vllm --vllm 0.20 --runner local --results-dir "$out/results-$run" --output-dir "$out/output" \
    --no-report --label "$label" -- --synthetic qwen3-8b-awq --warmup "$WARMUP" --iters "$ITERS" \
    ${extra[@]+"${extra[@]}"} || rc=$?
  echo "=== $run: exit $rc after $(( $(date +%s) - t0 )) s"
  [ -d "$out/results-$run" ] && tar -C "$out" -czf "$out/results-$run.tar.gz" "results-$run" && rm -rf "${out:?}/results-$run"
done

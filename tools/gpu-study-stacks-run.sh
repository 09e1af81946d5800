#!/usr/bin/env bash
# The study's own stacks on a GPU host without Docker or internet (issue 16): vLLM 0.12.0 / torch 2.9.0 and
# transformers 4.51.3 + autoawq 0.2.9 / torch 2.9.1, exactly as images/vllm and images/hf lock them, installed from a
# wheelhouse made elsewhere with `nox -s wheelhouse -- vllm` and `nox -s wheelhouse -- hf` (one folder may hold both)
# and copied to this host by any means. Every run goes through the kit's own entry points (--runner local).
#
#   KIT_GIT_COMMIT=... KIT_GIT_DIRTY=0|1 tools/gpu-study-stacks-run.sh WHEELHOUSE OUTDIR RUN...
#
# RUN, in the issue's order of priority (`all` = every one of them, in this order):
#   v012-base32   vLLM 0.12.0, both rows, the study configuration (CUDA graphs on, async scheduling off), input 32
#   v020-base32   vLLM 0.20.0, the same (for the version comparison, which needs the same GPU in the same lease):
#                 its wheels on this host's torch 2.11 (tools/gpu-vllm-reference-run.sh; WHEELS_DIR)
#   v012-base512  vLLM 0.12.0, both rows, input 512
#   v012-eager32  vLLM 0.12.0, both rows, --enforce-eager, input 32
#   hf32, hf512   transformers 4.51.3 + autoawq 0.2.9 on torch 2.9.1, input 32 / 512
#   profile       week-2 profile (cold and warm prefill, decode step) on the same stack
# Output 128, warm-up 3 (WARMUP), 10 iterations (ITERS), synthetic Qwen3-8B-AWQ weights (made once, KIT_CACHE_DIR).
# ROWS=awq_marlin (or awq) narrows the vLLM 0.12.0 runs to one row, so a short lease can take them one call each.
# The venvs .venv-vllm/ and .venv-hf/ are made from the wheelhouse on first need (`python3 -m kit venv STACK
# --wheelhouse DIR`: no index, every hash checked) and reused by later calls on the same host.
# Writes OUTDIR/log.txt and OUTDIR/results-<RUN>.tar.gz (results JSONs; output/ traces for the profile).
set -euo pipefail
wheelhouse=${1:?usage: tools/gpu-study-stacks-run.sh WHEELHOUSE OUTDIR RUN...}
out=${2:?usage: tools/gpu-study-stacks-run.sh WHEELHOUSE OUTDIR RUN...}
shift 2
[ $# -gt 0 ] || { echo "name at least one RUN: v012-base32 v020-base32 v012-base512 v012-eager32 hf32 hf512 profile (or all)" >&2; exit 2; }
[ "$*" = all ] && set -- v012-base32 v020-base32 v012-base512 v012-eager32 hf32 hf512 profile
mkdir -p "$out"
exec > >(tee -a "$out/log.txt") 2>&1
cd "$(dirname "$0")/.."
: "${KIT_GIT_COMMIT:?pass KIT_GIT_COMMIT (and KIT_GIT_DIRTY): a copied checkout may carry a stale .git}"
export HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 PYTHONUNBUFFERED=1
export KIT_CACHE_DIR=${KIT_CACHE_DIR:-/tmp/kit-cache}
ITERS=${ITERS:-10} WARMUP=${WARMUP:-3}
label="reference run: the study's locked stack, offline venv from a wheelhouse, synthetic Qwen3-8B-AWQ weights, local runner"
workload=(--synthetic qwen3-8b-awq --warmup "$WARMUP" --iters "$ITERS")
rows=(--quantization "${ROWS:-awq,awq_marlin}")

venv() {  # venv STACK: .venv-STACK/ from the wheelhouse, once per host
  [ -x ".venv-$1/bin/python" ] && return
  echo "=== $(date -u +%H:%M:%S) venv $1 from $wheelhouse"
  local t0; t0=$(date +%s)
  env -u PYTHONPATH python3 -m kit venv "$1" --wheelhouse "$wheelhouse"
  echo "=== venv $1: $(( $(date +%s) - t0 )) s"
}

kit_in() {  # kit_in STACK ARGS...: the kit's CLI run by the stack's own venv (it has the kit's host-side needs)
  local stack=$1; shift
  env -u PYTHONPATH ".venv-$stack/bin/python" -m kit "$@"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap,clocks.sm,clocks.mem,power.limit --format=csv
for run in "$@"; do
  echo; echo "=== $(date -u +%H:%M:%S) $run"
  t0=$(date +%s) rc=0 dest="$out/results-$run"
  common=(--runner local --results-dir "$dest" --output-dir "$dest/output" --no-report --label "$label")
  case "$run" in
    v012-base32)  venv vllm && kit_in vllm bench-vllm "${common[@]}" -- "${workload[@]}" "${rows[@]}" || rc=$? ;;
    v012-base512) venv vllm && kit_in vllm bench-vllm "${common[@]}" -- "${workload[@]}" "${rows[@]}" --input-len 512 || rc=$? ;;
    v012-eager32) venv vllm && kit_in vllm bench-vllm "${common[@]}" -- "${workload[@]}" "${rows[@]}" --enforce-eager || rc=$? ;;
    v020-base32)  tools/gpu-vllm-reference-run.sh "$dest" base32 || rc=$? ;;
    hf32)         venv hf && kit_in hf bench-hf "${common[@]}" -- "${workload[@]}" || rc=$? ;;
    hf512)        venv hf && kit_in hf bench-hf "${common[@]}" -- "${workload[@]}" --input-len 512 || rc=$? ;;
    profile)      venv hf && kit_in hf profile "${common[@]}" -- --synthetic qwen3-8b-awq --warmup "$WARMUP" || rc=$? ;;
    *) echo "unknown RUN $run" >&2; rc=2 ;;
  esac
  echo "=== $run: exit $rc after $(( $(date +%s) - t0 )) s"
  # The device tool returns at most 8 files: one archive per run.
  [ -d "$dest" ] && tar -C "$out" -czf "$dest.tar.gz" "results-$run" && rm -rf "$dest"
done

#!/usr/bin/env bash
# The GPU proof on a CUDA machine, from the repository root (`make gpu-check`):
#   bash experiments/benchmarks/gpu_check.sh [OUT_DIR] [gpu_check.py options]
# Installs the wheels that `make gpu-pack` put in .gpu/whl (packages the GPU machine lacks, for
# its Python) into a scratch folder, then runs experiments/benchmarks/gpu_check.py on the data
# copied to .gpu/data. Nothing is downloaded: the machine may have no network.
set -uo pipefail
cd "$(dirname "$0")/../.."
PACK=${GPU_PACK:-.gpu}
OUT_DIR=${1:-${OUT:-bench_output/gpu_check}}
shift || true
PY=${PYTHON:-python3}
# Only where a needed package is missing (the GPU machine), never over a development venv.
if ! "$PY" -c "import jsonargparse, omegaconf, diffusers, timm" 2>/dev/null \
    && compgen -G "$PACK/whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/anomalyvfm-gpu-site "$PACK"/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/anomalyvfm-gpu-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
DATA=$PACK/data
[ -d "$DATA" ] || DATA=../shared/data
# Run files (a 1.3 GB checkpoint among them) stay out of OUT_DIR, which gets the JSON and log.
WORK=${GPU_WORK:-/tmp/anomalyvfm-gpu-work}
exec "$PY" experiments/benchmarks/gpu_check.py --data "$DATA" --out "$OUT_DIR" --work "$WORK" "$@"

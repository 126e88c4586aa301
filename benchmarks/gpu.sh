#!/usr/bin/env bash
# Torch training benchmark on one NVIDIA GPU (bf16 autocast, channels_last, torch.compile), under 5 minutes,
# nothing to download: needs only PyTorch (with CUDA) and numpy already installed.
#   bash benchmarks/gpu.sh [--batch-size 512] [--steps 100] [--results FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader || true
exec timeout 290 "$PY" benchmarks/gpu_bench.py "$@"

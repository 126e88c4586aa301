#!/bin/bash
# What a machine with one GPU (and many cores) runs for this project in under 10 minutes, from the repository root:
#   1. the chapter recipe's weights (PyTorch, bf16, seed 0), to ship with benchmarks/trained_weights.py;
#   2. the exercise study's PyTorch seeds on the GPU (quick-b32 in fp32, 4 runs at a time) and nin-vgg11;
#   3. data-parallel speed with CPU workers on its cores (1 against 2 and 4 workers; JAX too, where it runs).
# Everything lands in one archive, $OUT/results.tgz (OUT defaults to ./gpu-results), study checkpoints left out.
#     NIN_DATA_DIR=/path/to/fashion-mnist bash benchmarks/gpu_session.sh
set -u
export PYTHONUNBUFFERED=1 NIN_DATA_DIR=${NIN_DATA_DIR:-$PWD/.devdata/fashion-mnist}
OUT=${OUT:-$PWD/gpu-results}; mkdir -p "$OUT"
W=$(mktemp -d); mkdir -p $W
T0=$(date +%s)
el() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $W/timeline.txt; }
{ nvidia-smi -L; nproc; python3 -c "import torch,numpy;print('torch',torch.__version__,'numpy',numpy.__version__,torch.cuda.get_device_name())"; python3 -m pip show jax jaxlib flax optax 2>/dev/null | grep -E "^(Name|Version)"; lscpu | grep -E "Model name|^Flags"; uptime; } > $W/env.txt 2>&1
head -12 $W/env.txt
el chapter start
setsid python3 -m nin_common.cli train --backend torch --recipe chapter --seed 0 --device gpu --out $W/chapter-torch-s0 --no-progress > $W/chapter.log 2>&1 &
CH=$!
setsid python3 benchmarks/study.py --device gpu --jobs 4 --nice 0 --out $W/study --results $W/study.jsonl --seeds 0,1,2 > $W/study.log 2>&1 &
ST=$!
setsid python3 benchmarks/study.py --device gpu --variants nin-vgg11 --seeds 0 --nice 0 --out $W/study --results $W/study-vgg.jsonl > $W/study-vgg.log 2>&1 &
SV=$!
while [ $(( $(date +%s) - T0 )) -lt 340 ]; do
  sleep 5; kill -0 $CH 2>/dev/null || kill -0 $ST 2>/dev/null || kill -0 $SV 2>/dev/null || break
  [ -f $W/chapter.ended ] || kill -0 $CH 2>/dev/null || { touch $W/chapter.ended; el "chapter ended"; }
done
el "phase 1 over; stopping what runs"
for p in $CH $ST $SV; do kill -TERM -- -$p 2>/dev/null; done; sleep 3
pkill -9 -f nin_common.cli; sleep 1
tail -4 $W/chapter.log; grep -c . $W/study.jsonl $W/study-vgg.jsonl; tail -2 $W/study.log
el "torch data-parallel, CPU workers"
timeout 75 python3 benchmarks/distributed.py --backend torch --workers 2 --rounds 1 --results $W/distributed.jsonl 2>&1 | tail -3
timeout 50 python3 benchmarks/distributed.py --backend torch --workers 4 --rounds 1 --results $W/distributed.jsonl 2>&1 | tail -3
el "jax"
timeout 40 env JAX_PLATFORMS=cpu python3 benchmarks/distributed.py --backend jax --workers 2 --rounds 1 --results $W/distributed-jax.jsonl > $W/jax.log 2>&1; tail -3 $W/jax.log
el end
pkill -9 -f nin_common.cli
tar czf "$OUT/results.tgz" --exclude='study/*/checkpoint' -C $W . ; ls -la "$OUT"

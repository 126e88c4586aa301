#!/usr/bin/env bash
# What one NVIDIA GPU (an H100 or H200 with many cores, no network) runs for this project, in under 8 minutes,
# from the repository root, with python3, numpy, torch (CUDA), jax (CUDA plugin), flax, optax and pytest installed:
#   1. the machine and the versions; nin installed from this checkout without the network (else a clear fallback);
#   2. the GPU tests of PyTorch and JAX (pytest -m gpu, a skip counted as a failure);
#   3. the shipped chapter weights on the 10,000 test images on the GPU in PyTorch and JAX: accuracy (stated:
#      0.8339), and how many predicted classes differ from the same weights on the CPU (float32 as float32, TF32
#      off; the framework's default, TF32 allowed, too);
#   4. the chapter recipe (224 px) for one epoch in PyTorch and JAX, bf16 and fp32, at batch 128 and at the
#      largest batch that trains (searched from 4096 down), with steady-state images/s over timed steps too;
#   5. a torch.profiler table of a few bf16 training steps: what takes the GPU's time;
#   6. every result as a JSON line in benchmarks/results/gpu.jsonl (GPU, framework and version, precision, batch,
#      images/s, accuracy, date, commit), and a summary against the target: 40,000 bf16 training images/s at
#      224 px on one H100.
# Each step runs under `timeout`, cut to what is left of the budget (GPU_DEADLINE_S, default 400 s); a step the
# budget cannot fit is skipped and says so.  The log and this run's rows go to $OUT (gpu.log, gpu.jsonl, runs/)
# when OUT is set, else to a temporary folder the script names.
#
#   mkdir -p .devdata/fashion-mnist && cp /path/to/*-ubyte.gz .devdata/fashion-mnist/   # the 4 IDX .gz files
#   bash benchmarks/gpu.sh                       # on the GPU machine (GIT_COMMIT=... where .git is absent)
#   GPU_SMOKE=1 PYTHON=.venv/bin/python bash benchmarks/gpu.sh   # (or --cpu-smoke) the logic, on a CPU, in minutes
#
# Smoke mode runs every step on the CPU with tiny sizes (67 px training, a few images), skips the install unless
# NIN_INSTALL=1 (it would install this checkout into $PYTHON's environment) and writes its rows to a temporary
# file, never to benchmarks/results/gpu.jsonl.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SMOKE=${GPU_SMOKE:-0}
for arg in "$@"; do
  case $arg in
    --cpu-smoke) SMOKE=1 ;;
    *) echo "usage: bash benchmarks/gpu.sh [--cpu-smoke]" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
T0=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nin-gpu.XXXXXX")
[ -n "${OUT:-}" ] && mkdir -p "$OUT"
DEST=${OUT:-$WORK}
LOG=$DEST/gpu.log
exec > >(tee -a "$LOG") 2>&1

export GPU_SMOKE=$SMOKE PYTHONUNBUFFERED=1 MPLBACKEND=Agg XLA_PYTHON_CLIENT_PREALLOCATE=false
export JAX_COMPILATION_CACHE_DIR=$WORK/jax-cache  # the search's compiled steps serve the epochs of the same shapes
export GPU_BENCH_RUN_ID=$(date -u +%Y%m%dT%H%M%SZ) GPU_BENCH_MACHINE=$WORK/machine.json GPU_BENCH_RUN_ROWS=$WORK/run.jsonl
if [ -z "${NIN_DATA_DIR:-}" ]; then
  NIN_DATA_DIR=$ROOT/.devdata/fashion-mnist
  [ "$SMOKE" = 1 ] && [ ! -d "$NIN_DATA_DIR" ] && NIN_DATA_DIR=/usr/share/datasets/fashion-mnist
fi
export NIN_DATA_DIR
if [ -z "${GIT_COMMIT:-}" ]; then
  GIT_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || true)
  if [ -z "$GIT_COMMIT" ]; then GIT_COMMIT=unknown
  elif [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then GIT_COMMIT=$GIT_COMMIT-dirty; fi
fi
export GIT_COMMIT

if [ "$SMOKE" = 1 ]; then
  DEADLINE=${GPU_DEADLINE_S:-900}
  export GPU_BENCH_RESULTS=$WORK/gpu.jsonl
  DEV=cpu; IMG=67; B0=32; SEARCH=64,32; LIMITS=(--limit-train 192 --limit-val 64)
  PRED=(--limit 48 --batch-size 16); CLI_EVAL=(--limit-val 48 --batch-size 16)
  SPEED=(--seconds 0.3 --min-steps 2 --warmup 1); PROFILE=(--batch-size 16 --warmup 1 --timed 2 --steps 2)
  CPU_THREADS=1
else
  DEADLINE=${GPU_DEADLINE_S:-400}
  export GPU_BENCH_RESULTS=$ROOT/benchmarks/results/gpu.jsonl
  DEV=gpu; IMG=224; B0=128; SEARCH=4096,2048,1024,512,256; LIMITS=()
  PRED=(); CLI_EVAL=()
  SPEED=(--seconds 2 --min-steps 5 --warmup 3); PROFILE=(--batch-size 128)
  CPU_THREADS=$(( $(nproc) / 2 ))
fi
MIN_STEP_S=15
NIN=("$PY" -m nin_common.cli)
BENCH=("$PY" -m benchmarks.gpu_bench)

say() { echo "[$(printf '%4d' $(( $(date +%s) - T0 )))s] $*"; }
left() { echo $(( DEADLINE - ($(date +%s) - T0) )); }
sync_out() { [ -n "${OUT:-}" ] && [ -f "$GPU_BENCH_RUN_ROWS" ] && cp -f "$GPU_BENCH_RUN_ROWS" "$OUT/gpu.jsonl"; return 0; }
step() {  # step NAME LIMIT_S COMMAND...: COMMAND under timeout, its limit cut to what is left of the budget
  local name=$1 limit=$2 rest status=ok rc start took
  shift 2
  rest=$(left)
  (( rest < limit )) && limit=$rest
  if (( limit < MIN_STEP_S )); then
    say "---- $name: SKIPPED, ${rest}s left of the ${DEADLINE}s budget"
    "${BENCH[@]}" step-row --name "$name" --status skipped --limit 0 > /dev/null
    return 125
  fi
  say "---- $name (limit ${limit}s): $*"
  start=$(date +%s)
  timeout -k 10 "$limit" "$@"
  rc=$?
  took=$(( $(date +%s) - start ))
  if (( rc == 124 || rc == 137 )); then status=timeout; elif (( rc != 0 )); then status=failed; fi
  say "---- $name: $status (exit $rc, ${took}s)"
  "${BENCH[@]}" step-row --name "$name" --status $status --rc $rc --seconds $took --limit "$limit" > /dev/null
  sync_out
  return $rc
}

say "nin GPU run $GPU_BENCH_RUN_ID, commit $GIT_COMMIT, smoke=$SMOKE, budget ${DEADLINE}s; work folder $WORK; log $LOG"
say "results: $GPU_BENCH_RESULTS (this run's rows: ${OUT:+$OUT/gpu.jsonl and }$GPU_BENCH_RUN_ROWS)"

# ---- 1. the machine; nin installed from this checkout
say "==== 1. machine"
nvidia-smi -L 2>&1 || say "nvidia-smi: not available"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit,driver_version --format=csv 2>/dev/null || true
say "$(nproc) cores; $(uname -srm); $("$PY" --version 2>&1)"
say "Fashion-MNIST: $NIN_DATA_DIR: $(ls "$NIN_DATA_DIR" 2>/dev/null | tr '\n' ' ')"
[ "$(ls "$NIN_DATA_DIR"/*-ubyte* 2>/dev/null | wc -l)" -ge 4 ] || say "WARNING: Fashion-MNIST's 4 files are not in $NIN_DATA_DIR: the steps that need it will fail"
if [ "$SMOKE" = 1 ] && [ "${NIN_INSTALL:-0}" != 1 ]; then
  say "---- install: skipped in smoke mode (NIN_INSTALL=1 installs this checkout into $PY's environment)"
else
  if ! step install 120 "$PY" -m pip install --no-deps --no-build-isolation --no-index -e .; then
    mkdir -p "$WORK/pythonpath" && ln -sfn "$ROOT/common" "$WORK/pythonpath/nin_common"
    export PYTHONPATH=$WORK/pythonpath:$ROOT${PYTHONPATH:+:$PYTHONPATH}
    say "FALLBACK: pip could not install nin from this checkout (see above); running it from the checkout instead:"
    say "  PYTHONPATH=$PYTHONPATH, with nin_common a link to $ROOT/common (no 'nin' command: python -m nin_common.cli)"
  fi
fi
"$PY" -c "import nin_common, nin_torch, nin_jax; print('nin from', nin_common.__file__, nin_torch.__file__, nin_jax.__file__)" \
  || say "WARNING: nin does not import; the steps below will fail"
"$PY" -c "import nin_common, os, sys; sys.exit(not os.path.realpath(nin_common.__file__).startswith(os.path.realpath('$ROOT')))" \
  || say "WARNING: nin_common does not come from this checkout ($ROOT)"
MACHINE=(); [ "$SMOKE" = 1 ] && MACHINE=(--cpu-label "CPU (smoke run)")
step machine 90 "${BENCH[@]}" machine --out "$GPU_BENCH_MACHINE" "${MACHINE[@]}"
grep -q '"torch_cuda_available": true' "$GPU_BENCH_MACHINE" 2>/dev/null || [ "$SMOKE" = 1 ] \
  || say "WARNING: PyTorch sees no CUDA GPU: the GPU steps below will fail"

# ---- 3 (CPU half, in the background while the tests run): the chapter weights on the CPU, float32
say "==== 3a. the chapter weights on the CPU (background, nice 10, $CPU_THREADS threads for torch)"
mkdir -p "$WORK/pred"
bg_limit=$(left); (( bg_limit > 240 )) && bg_limit=240
CUDA_VISIBLE_DEVICES= OMP_NUM_THREADS=$CPU_THREADS nice -n 10 timeout -k 10 $bg_limit "${BENCH[@]}" predict \
  --backend torch --device cpu --modes float32 "${PRED[@]}" --out "$WORK/pred/cpu-torch.npz" > "$WORK/cpu-torch.log" 2>&1 &
CPU_TORCH=$!
JAX_PLATFORMS=cpu nice -n 10 timeout -k 10 $bg_limit "${BENCH[@]}" predict \
  --backend jax --device cpu --modes float32 "${PRED[@]}" --out "$WORK/pred/cpu-jax.npz" > "$WORK/cpu-jax.log" 2>&1 &
CPU_JAX=$!

# ---- 2. the GPU tests of PyTorch and JAX (with NIN_REQUIRE_GPU=1 every skipped gpu test fails, TensorFlow's and
# MXNet's too, which this machine lacks: -k keeps PyTorch's and JAX's)
say "==== 2. GPU tests"
XDIST=(); "$PY" -c "import xdist" 2>/dev/null && XDIST=(-n 4)
if [ "$SMOKE" = 1 ]; then  # no GPU here: the gpu tests are collected and skipped
  step gpu-tests 150 env NIN_REQUIRE_BACKENDS=torch,jax "$PY" -m pytest -m gpu -k "torch or jax" -q -p no:cacheprovider
else
  step gpu-tests 150 env NIN_REQUIRE_GPU=1 NIN_REQUIRE_BACKENDS=torch,jax NIN_REQUIRE_DATA=1 \
    "$PY" -m pytest -m gpu -k "torch or jax" -q -p no:cacheprovider "${XDIST[@]}"
fi

# ---- 3. the chapter weights on the GPU, then agreement with the CPU
say "==== 3b. the chapter weights on the GPU: framework default, then float32 as float32"
step predict-gpu-torch 90 "${BENCH[@]}" predict --backend torch --device $DEV "${PRED[@]}" --out "$WORK/pred/gpu-torch.npz"
step predict-gpu-jax 120 "${BENCH[@]}" predict --backend jax --device $DEV "${PRED[@]}" --out "$WORK/pred/gpu-jax.npz"
say "waiting for the CPU predictions"
wait $CPU_TORCH; say "CPU torch predictions: exit $?"; cat "$WORK/cpu-torch.log"
wait $CPU_JAX; say "CPU jax predictions: exit $?"; cat "$WORK/cpu-jax.log"
say "==== 3c. agreement"
P=$WORK/pred
for pair in "cpu-torch gpu-torch" "cpu-jax gpu-jax" "cpu-torch cpu-jax" "gpu-torch gpu-jax"; do
  set -- $pair
  if [ -f "$P/$1.npz" ] && [ -f "$P/$2.npz" ]; then
    MIN_STEP_S=3 step "agree-$2-vs-$1" 30 "${BENCH[@]}" agree --reference "$P/$1.npz" --candidate "$P/$2.npz"
  else
    say "agreement $2 vs $1: SKIPPED (missing predictions)"
  fi
done

# ---- 4 and 5. training speed: steady state and largest batch, one epoch of nin train, the profile
train_epoch() {  # train_epoch BACKEND PRECISION BATCH
  local run=$WORK/runs/$1-$2-b$3
  if step "epoch-$1-$2-b$3" 100 "${NIN[@]}" train --backend "$1" --recipe chapter --epochs 1 --device $DEV \
      --precision "$2" --batch-size "$3" --image-size $IMG "${LIMITS[@]}" --no-progress --out "$run"; then
    "${BENCH[@]}" epoch-row --run "$run" --precision "$2" \
      --command "nin train --backend $1 --recipe chapter --epochs 1 --device $DEV --precision $2 --batch-size $3 --image-size $IMG ${LIMITS[*]}" > /dev/null
    [ -n "${OUT:-}" ] && mkdir -p "$OUT/runs/$(basename "$run")" && cp -f "$run/metrics.jsonl" "$OUT/runs/$(basename "$run")/"
    sync_out
  fi
}
speed_and_epochs() {  # speed_and_epochs BACKEND PRECISION
  local maxfile=$WORK/max-$1-$2.txt extra=()
  [ "$1" = torch ] && [ "$2" = bf16 ] && extra=(--cudnn-benchmark-too)
  step "speed-$1-$2" 120 "${BENCH[@]}" speed --backend "$1" --precision "$2" --device $DEV --image-size $IMG \
    --batch-sizes $B0 --search $SEARCH --max-file "$maxfile" "${SPEED[@]}" "${extra[@]}"
  train_epoch "$1" "$2" $B0
  local largest
  largest=$(cat "$maxfile" 2>/dev/null | tr -d '[:space:]')
  if [ -n "$largest" ] && [ "$largest" != "$B0" ]; then
    train_epoch "$1" "$2" "$largest"
  else
    say "epoch $1 $2 at the largest batch: SKIPPED (largest batch: '${largest:-not found}')"
  fi
}
say "==== 4. training speed (chapter recipe, ${IMG} px), bf16 first"
speed_and_epochs torch bf16
say "==== 5. profile"
step profile-torch-bf16 60 "${BENCH[@]}" profile --device $DEV --precision bf16 --image-size $IMG "${PROFILE[@]}"
speed_and_epochs jax bf16
speed_and_epochs torch fp32
speed_and_epochs jax fp32
say "==== the nin evaluate command on the GPU (what a user runs; TF32 as the frameworks default)"
if step cli-evaluate 90 sh -c '"$@" > "'"$WORK"'/cli-evaluate.jsonl"' sh "${NIN[@]}" evaluate --weights chapter \
    --backend torch,jax --device $DEV "${CLI_EVAL[@]}" --json --no-progress; then
  cat "$WORK/cli-evaluate.jsonl"
  "${BENCH[@]}" import-rows --file "$WORK/cli-evaluate.jsonl" > /dev/null
fi

# ---- 6. summary (after the budget: at most 30 s more)
timeout 30 "${BENCH[@]}" summary --rows "$GPU_BENCH_RUN_ROWS"
sync_out
say "done in $(( $(date +%s) - T0 ))s; $(grep -c . "$GPU_BENCH_RUN_ROWS" 2>/dev/null || echo 0) rows appended to $GPU_BENCH_RESULTS"
[ -n "${OUT:-}" ] && say "in $OUT: $(cd "$OUT" && find . -type f | sort | tr '\n' ' ')"
exit 0

#!/usr/bin/env bash
# One call on a lent GPU (H100/H200): parity first, then the inference and training-step tables, deit vs timm
# in the same process. Results land in $OUT (inference.{json,md}, train_step.{json,md}, profile_train_step.txt,
# dali.{json,md}, folder_train.{json,md}, teacher_replay.{json,md}, env.txt, log.txt: 13 files); rows run in order of importance and each pass stops starting rows when its share
# of the budget is spent, so a short lease still returns the goal rows. From the repository root:
#
#     bash benchmarks/run_gpu.sh                  # OUT defaults to benchmarks/results/gpu; ~8 minutes
#     BENCH_BUDGET_S=300 OUT=/tmp/x bash benchmarks/run_gpu.sh
#     BENCH_SMOKE=1 OUT=/tmp/smoke bash benchmarks/run_gpu.sh   # the plumbing on a CPU: tiny model, eager
#
# Needs python3 with torch and timm; deit itself is taken from ./src, nothing is installed.
set -u
OUT=${OUT:-benchmarks/results/gpu}
PY=${PYTHON:-python3}
BUDGET=${BENCH_BUDGET_S:-480}  # seconds for everything below; device time is scarce
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export TORCHINDUCTOR_FX_GRAPH_CACHE=1  # later passes re-use the compiled graphs of earlier ones

DEVICE=cuda
TINY=deit_tiny_distilled_patch16_224 SMALL=deit_small_distilled_patch16_224
BASE=deit_base_distilled_patch16_224 BASE384=deit_base_distilled_patch16_384
TEACHER=regnety_160
# docs/reference.md's batch sizes (timm measured on an H200 at these).
B_TINY=1024 B_SMALL=512 B_BASE=256 B_BASE384=64 T_SMALL=256 T_BASE=128
INF_PATHS=() TRAIN_PATHS=() LATE_PATHS=(--paths timm,ours-compile,timm-compile,ours-compile-cudagraphs) QUICK=()
if [ -n "${BENCH_SMOKE:-}" ]; then  # same passes, CPU-sized: checks the script, not the speed
  DEVICE=cpu SMALL=$TINY BASE=$TINY BASE384=$TINY TEACHER=test_resnet
  B_TINY=2 B_SMALL=2 B_BASE=2 B_BASE384=2 T_SMALL=2 T_BASE=2
  INF_PATHS=(--paths timm,ours) TRAIN_PATHS=(--paths official-timm,ours-eager) LATE_PATHS=(--paths timm,ours-ort)
  QUICK=(--steps 1 --warmup 1 --rounds 1)
fi

START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
LOG="$OUT/log.txt"
: > "$LOG"
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv \
    || echo "no nvidia-smi"
  "$PY" -c "import torch, timm, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'timm', \
timm.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
  echo "cpu cores: $(nproc), $(grep -m1 'model name' /proc/cpuinfo)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

run() {  # run <seconds> <command...>: one pass, stopped at its limit (rows already written stay in $OUT)
  local limit=$1; shift
  if [ "$limit" -lt 45 ]; then echo "=== skipped (budget): $*" | tee -a "$LOG"; return; fi
  echo "=== $* (limit ${limit}s, $(( $(date +%s) - START ))s elapsed)" | tee -a "$LOG"
  timeout --signal=INT --kill-after=15 "$limit" "$@" 2>&1 | grep -v -E "^W[0-9]{4} |UserWarning|warnings.warn" \
    | tee -a "$LOG"
}
INF=("$PY" benchmarks/bench_inference.py --device "$DEVICE" --amp bf16 --out "$OUT" "${QUICK[@]}")
TRAIN=("$PY" benchmarks/bench_train_step.py --device "$DEVICE" --amp bf16 --teacher "$TEACHER" --out "$OUT" \
       "${QUICK[@]}")
[ "$DEVICE" = cpu ] && INF=("${INF[@]/bf16/none}") TRAIN=("${TRAIN[@]/bf16/none}")

# 0. `deit bench` itself on the card, eager (seconds).
run 60 "$PY" -m deit bench --model "$TINY" --device "$DEVICE" --batch-size 64 --no-compile --steps 5 --warmup 2
# 1. Goal rows: inference small⚗ and base⚗; each row checks ours vs timm and compiled vs eager before timing.
run $(( $(left) * 40 / 100 )) "${INF[@]}" "${INF_PATHS[@]}" --models "$SMALL:$B_SMALL,$BASE:$B_BASE" --budget-s 170
# 2. Goal row: training step small⚗ + RegNetY-16GF, hard distillation, with the time breakdown and kernel profile.
run $(( $(left) * 60 / 100 )) "${TRAIN[@]}" "${TRAIN_PATHS[@]}" --students "$SMALL:$T_SMALL" --profile --budget-s 200
# 2b. The DALI input pipeline on the card (JPEG folder -> decode + train transform + RandAugment), if installed.
DALI=("$PY" benchmarks/bench_dali.py --device "$DEVICE" --out "$OUT")
[ -n "${BENCH_SMOKE:-}" ] && DALI+=(--images 8 --batch-size 4 --epochs 1 --threads 1)
if "$PY" -c "import nvidia.dali" 2>/dev/null; then
  run $(( $(left) * 25 / 100 )) "${DALI[@]}"
else
  echo "=== skipped: DALI not installed (pip install 'nvidia-dali-cuda130>=2.4')" | tee -a "$LOG"
fi
# 2c. End to end from JPEG files: `deit train` (torch DataLoader workers, then --data-loader dali) vs the
#     official loop on the same generated folder, small⚗ without a teacher, bf16.
E2E=("$PY" benchmarks/bench_end_to_end.py --device "$DEVICE" --model "${SMALL/_distilled/}" --out "$OUT")
"$PY" -c "import nvidia.dali" 2>/dev/null && E2E+=(--data-loaders torch,dali)
if [ -n "${BENCH_SMOKE:-}" ]; then E2E+=(--batch-size 4 --steps 2 --rounds 1 --workers 1)
else E2E+=(--amp bf16 --batch-size "$T_SMALL" --steps 20 --workers "$(nproc)"); fi
run $(( $(left) * 30 / 100 )) "${E2E[@]}"
# 2d. The in-memory path (issue 19): DIGITS decoded once onto the card, crop + flip per batch on the device,
#     against the per-image DataLoader; `deit train` itself, images/s from its log.
MEM=("$PY" benchmarks/bench_memory_path.py --device "$DEVICE" --out "$OUT")
if [ -n "${BENCH_SMOKE:-}" ]; then MEM+=(--amp none --batch-size 16 --epochs 2 --rounds 1 --workers 0 \
  --model-kwargs '{"patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}')
else MEM+=(--workers "$(nproc)"); fi
run $(( $(left) * 20 / 100 )) "${MEM[@]}"
# 2e. Issue 28: a generated 64 px image folder on the in-memory path above 32 px -- the store and the batched
#     RandomResizedCrop + flip on the card (no DALI) -- vs the plain torchvision ImageFolder + timm loop (per-image
#     PIL transforms, DataLoader); --parts: the data's and the step's cost per image before/after, 64 and 224 px.
FOLDER=("$PY" benchmarks/bench_folder_train.py --device "$DEVICE" --out "$OUT")
if [ -n "${BENCH_SMOKE:-}" ]; then FOLDER+=(--epochs 1 --rounds 1)
else FOLDER+=(--epochs 5 --rounds 2 --parts); fi
run $(( $(left) * 20 / 100 )) "${FOLDER[@]}"
# 2f. Teacher replay (issue 31): `deit train`'s step of tiny⚗ with RegNetY-16GF per step vs replayed from stored
#     labels (--teacher-labels), and the label pass's forward, interleaved, bf16; the K-students table follows.
REPLAY=("$PY" benchmarks/bench_teacher_replay.py --device "$DEVICE" --amp bf16 --batch-size "$T_SMALL" \
        --teacher "$TEACHER" --out "$OUT")
[ -n "${BENCH_SMOKE:-}" ] && REPLAY=("${REPLAY[@]/bf16/none}") && REPLAY+=(--rounds 1 --steps 1 --warmup 0)
run $(( $(left) * 20 / 100 )) "${REPLAY[@]}"
# 3. The rest, while time lasts: tiny⚗ and base⚗-384 inference, base⚗ training, timm compiled and CUDA graphs.
run $(( $(left) * 40 / 100 )) "${INF[@]}" "${INF_PATHS[@]}" --append --models "$TINY:$B_TINY,$BASE384:$B_BASE384" \
  --budget-s 90
run $(( $(left) * 75 / 100 )) "${TRAIN[@]}" "${TRAIN_PATHS[@]}" --append --students "$BASE:$T_BASE" --budget-s 60
run $(( $(left) * 60 / 100 )) "${INF[@]}" "${LATE_PATHS[@]}" --append --models "$SMALL:$B_SMALL" --budget-s 30
# 4. The proposed model change (last block on the prefix tokens only), compiled, bf16: printed to the log.
if [ -z "${BENCH_SMOKE:-}" ]; then
  run $(( $(left) - 5 )) "$PY" benchmarks/bench_prefix_last_block.py --device cuda --amp bf16 --compile
fi

echo "=== done in $(( $(date +%s) - START ))s" | tee -a "$LOG"
cat "$OUT"/inference.md "$OUT"/train_step.md "$OUT"/dali.md "$OUT"/end_to_end.md "$OUT"/memory_path.md \
  "$OUT"/folder_train.md "$OUT"/teacher_replay.md 2>/dev/null

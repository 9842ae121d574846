#!/usr/bin/env bash
# One call on a lent GPU (H100/H200): parity first, then the inference and training-step tables, deit vs timm
# in the same process. Results land in $OUT (JSON + Markdown, a kernel profile, the log); rows run in order of
# importance and each script stops starting rows when its share of the budget is spent, so a short lease still
# returns the goal rows. Run from the repository root:
#
#     bash benchmarks/run_gpu.sh                 # OUT defaults to benchmarks/results/gpu
#     BENCH_BUDGET_S=300 OUT=/tmp/x bash benchmarks/run_gpu.sh
#
# Needs python3 with torch, timm (and a CUDA GPU); deit itself is taken from ./src, nothing is installed.
set -u
OUT=${OUT:-benchmarks/results/gpu}
PY=${PYTHON:-python3}
BUDGET=${BENCH_BUDGET_S:-480}  # seconds for everything below; device time is scarce
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export TORCHINDUCTOR_FX_GRAPH_CACHE=1  # a second pass re-uses the first pass's compiled graphs
START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
LOG="$OUT/log.txt"
: > "$LOG"

{
  date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv
  "$PY" -c "import torch, timm, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'timm', \
timm.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  nproc; grep -m1 'model name' /proc/cpuinfo
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

run() {  # run <seconds> <command...>: one pass, killed at its limit (rows already written stay)
  local limit=$1; shift
  if [ "$limit" -lt 45 ]; then echo "skipped (budget): $*" | tee -a "$LOG"; return; fi
  echo "=== $* (limit ${limit}s)" | tee -a "$LOG"
  timeout --signal=INT --kill-after=15 "$limit" "$@" 2>&1 | grep -v -E "^W[0-9]{4} |UserWarning|warnings.warn" \
    | tee -a "$LOG"
}

# 0. The CLI on the GPU, eager (seconds): ours vs nothing, just that `deit bench` works there.
run 60 "$PY" -m deit bench --model deit_tiny_distilled_patch16_224 --device cuda --batch-size 64 --no-compile \
  --steps 5 --warmup 2
# 1. Goal rows: inference small⚗ and base⚗ (parity of ours vs timm and of compiled vs eager come first in each row).
run $(( $(left) * 40 / 100 )) "$PY" benchmarks/bench_inference.py --device cuda --amp bf16 --out "$OUT" \
  --models deit_small_distilled_patch16_224:512,deit_base_distilled_patch16_224:256 --budget-s 170
# 2. Goal row: training step small⚗ + RegNetY-16GF, with the breakdown and the kernel profile.
run $(( $(left) * 60 / 100 )) "$PY" benchmarks/bench_train_step.py --device cuda --amp bf16 --out "$OUT" \
  --students deit_small_distilled_patch16_224:256 --profile --budget-s 200
# 3. The rest, while time lasts: tiny⚗ and base⚗-384 inference, base⚗ training, timm compiled and CUDA graphs.
run $(( $(left) * 40 / 100 )) "$PY" benchmarks/bench_inference.py --device cuda --amp bf16 --out "$OUT" --append \
  --models deit_tiny_distilled_patch16_224:1024,deit_base_distilled_patch16_384:64 --budget-s 90
run $(( $(left) * 75 / 100 )) "$PY" benchmarks/bench_train_step.py --device cuda --amp bf16 --out "$OUT" \
  --append --students deit_base_distilled_patch16_224:128 --budget-s 60
run $(( $(left) - 5 )) "$PY" benchmarks/bench_inference.py --device cuda --amp bf16 --out "$OUT" --append \
  --models deit_small_distilled_patch16_224:512 --paths timm,ours-compile,timm-compile,ours-compile-cudagraphs \
  --budget-s 30

echo "=== done in $(( $(date +%s) - START ))s" | tee -a "$LOG"
cat "$OUT"/inference.md "$OUT"/train_step.md 2>/dev/null

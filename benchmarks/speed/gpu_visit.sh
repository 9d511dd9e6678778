#!/usr/bin/env bash
# One visit to a lent GPU, prepared in advance: issue 17's checks of the captured fast path. One device call
# may run at most 600 s and the visit has 15 minutes in all, starts included. The steps' limits sum to 630 s,
# the TF32 pair last: the tar is rewritten after every step, so a call cut at 600 s keeps what finished.
# Prepare here with ../shared/tools/device-wheels.sh (docs: ../shared/docs/GPU.md), then on the device
# (carry: [".whl"], timeout_s 600), after the install line that script prints:
#     bash benchmarks/speed/gpu_visit.sh
# Back here, the CPU reference of the end-to-end runs (same commands, eager, on this machine), then the
# comparison of their last logged metrics (the tar unpacked into FOLDER):
#     bash benchmarks/speed/gpu_visit.sh --cpu-reference
#     bash benchmarks/speed/gpu_visit.sh --compare FOLDER/runs /tmp/gpu_visit/runs
# Each step has its own timeout, so one that hangs costs its own slot only. Everything lands in $OUT as
# one tar (logs, speed JSON/Markdown); commit the numbers with this script's name as their command.
set -u
OUT=${OUT:-/tmp/gpu_visit_out}
WORK=${WORK:-/tmp/gpu_visit}  # at most 8 files come back from $OUT: work here, hand back one tar
mkdir -p "$WORK/logs" "$OUT"
log() { echo "== $(date -u +%T) $*" | tee -a "$WORK/logs/visit.log"; }
step() {  # step NAME SECONDS COMMAND...: run, keep its output, never stop the visit
    local name=$1 limit=$2
    shift 2
    log "$name"
    timeout "$limit" "$@" >"$WORK/logs/$name.log" 2>&1
    log "$name: exit $?"
    pack
}
pack() {  # after every step, so a visit cut at the device's 600 s still hands back every finished step
    mkdir -p "$WORK/speed-results" && cp -r benchmarks/results/speed/. "$WORK/speed-results/" 2>/dev/null
    tar -C "$WORK" --exclude='*.pt' -czf "$OUT/visit.tar.gz" logs speed-results runs 2>/dev/null
}
# The end-to-end runs: a short DTQL on the toy, one seed on the fast path (captured on CUDA, in-graph draw),
# and two seeds batched on the same path (--vectorize-seeds: captured on CUDA, not compiled; evaluated in one
# batched act).
train_runs() {  # train_runs DEVICE FAST SECONDS
    step "train-$1" "$3" python -m offrl_zoo.cli train dtql --task toy-25_gaussian-far --preset quick --seed 3 \
        --steps 100 pretrain_steps=50 fast="$2" --device "$1" --eval-every 100 --eval-episodes 1 --no-progress --out "$WORK/runs/one"
    step "train-seeds-$1" "$3" python -m offrl_zoo.cli train dtql --task toy-25_gaussian-far --preset quick --seed 3 \
        --seeds 2 --vectorize-seeds --steps 60 pretrain_steps=30 fast="$2" --device "$1" --eval-every 60 --eval-episodes 1 \
        --no-progress --out "$WORK/runs/seeds"
}
case "${1:-}" in
--cpu-reference)
    train_runs cpu false 900
    exit 0
    ;;
--compare)  # --compare GPU_RUNS CPU_RUNS: the last logged metrics of each run, side by side
    python - "$2" "$3" <<'PY'
import json, sys
from pathlib import Path

gpu, cpu = map(Path, sys.argv[1:3])
for metrics in sorted(gpu.glob("**/metrics.jsonl")):
    other = cpu / metrics.relative_to(gpu)
    a, b = (json.loads(p.read_text().splitlines()[-1]) for p in (metrics, other))
    print(metrics.relative_to(gpu).parent)
    for key in sorted(k for k in set(a) & set(b) if isinstance(a[k], float) and k not in ("time", "updates_per_s")):
        print(f"  {key:24s} gpu {a[key]:12.6g}  cpu {b[key]:12.6g}  rel {abs(a[key] - b[key]) / (abs(b[key]) + 1e-12):.2e}")
PY
    exit 0
    ;;
esac

step device 20 python -c "import torch, sys; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(), sys.version)"
# the captured fast path per stage (eager figures: GPU.md, 2026-12-04); DTQL first, DQL whose capture failed
# then, TD3+BC for its step variants, IQL. One visit has no room to compile all eight.
step speed 240 python benchmarks/speed/speed.py --device cuda --algorithms dtql dql td3bc iql --paths fast --steps 200 --warmup 8 --act-repeats 200 --tag capture-cuda
# the in-graph batch draw (draw=auto above) against the buffer feeding the captured graph, on the smallest update
step speed-buffer 40 python benchmarks/speed/speed.py --device cuda --algorithms td3bc --paths fast --draw buffer --steps 200 --warmup 8 --act-repeats 20 --tag capture-buffer-cuda
# 5 seeds as one captured seed batch against one seed's captured step (IQL: the shortest compile), and one
# batched act for the 5 seeds against one seed's (what a seed batch's evaluation calls per env step on CUDA)
step seeds 60 python benchmarks/speed/seeds.py --device cuda --algorithms iql --fast --steps 100 --warmup 8 --act-calls 50 --tag cuda
train_runs cuda true 100
# TF32 (config tf32) on the zoo's largest matmul load, SRPO's batch-2 048 behaviour stage, against float32 on the
# same card: the capture probe (no compile), so both fit in the visit
step tf32-off 35 python benchmarks/speed/capture.py --algorithms srpo --steps 100 --act-repeats 20 --tag srpo
step tf32-on 35 python benchmarks/speed/capture.py --algorithms srpo --steps 100 --act-repeats 20 --tf32 --tag srpo-tf32
log done
pack

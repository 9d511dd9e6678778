#!/usr/bin/env bash
# One visit to a lent GPU (15 minutes in all), prepared in advance: issue 17's checks of the captured fast
# path. Prepare here with ../shared/tools/device-wheels.sh (docs: ../shared/docs/GPU.md), then on the device
# (carry: [".whl"]), after the install line that script prints:
#     bash benchmarks/speed/gpu_visit.sh
# Each step has its own timeout, so one that hangs costs its own slot only. Everything lands in $OUT as
# one tar (logs, speed JSON/Markdown); commit the numbers with this script's name as their command.
set -u
OUT=${OUT:-/tmp/gpu_visit_out}
WORK=/tmp/gpu_visit  # at most 8 files come back from $OUT: work here, hand back one tar
mkdir -p "$WORK/logs" "$OUT"
log() { echo "== $(date -u +%T) $*" | tee -a "$WORK/logs/visit.log"; }
step() {  # step NAME SECONDS COMMAND...: run, keep its output, never stop the visit
    local name=$1 limit=$2
    shift 2
    log "$name"
    timeout "$limit" "$@" >"$WORK/logs/$name.log" 2>&1
    log "$name: exit $?"
}

step device 30 python -c "import torch, sys; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(), sys.version)"
# the captured fast path per stage (eager figures: GPU.md, 2026-12-04); DTQL first, DQL whose capture failed
# then, TD3+BC for its step variants, IQL. A 15-minute visit has no room to compile all eight.
step speed 330 python benchmarks/speed/speed.py --device cuda --algorithms dtql dql td3bc iql --paths fast --steps 200 --warmup 10 --act-repeats 200 --tag capture-cuda
# the in-graph batch draw (draw=auto above) against the buffer feeding the captured graph, on the smallest update
step speed-buffer 90 python benchmarks/speed/speed.py --device cuda --algorithms td3bc --paths fast --draw buffer --steps 200 --warmup 10 --act-repeats 20 --tag capture-buffer-cuda
# end to end: the same short run on CUDA (captured) and on the CPU (eager), losses compared
for device in cuda cpu; do
    fast=$([ "$device" = cuda ] && echo true || echo false)
    step "train-$device" 170 python -m offrl_zoo.cli train dtql --task toy-25_gaussian-far --seed 3 --steps 100 \
        pretrain_steps=50 fast=$fast --device "$device" --eval-every 100 --eval-episodes 1 \
        --out "$WORK/runs/dtql-$device"
done
step compare-losses 30 python - "$WORK/runs" <<'PY'
import json, sys
from pathlib import Path

runs = Path(sys.argv[1])
def last(device):
    lines = [json.loads(l) for l in next(runs.glob(f"dtql-{device}/**/metrics.jsonl")).read_text().splitlines()]
    return lines[-1]
cuda, cpu = last("cuda"), last("cpu")
for key in sorted(set(cuda) & set(cpu)):
    if isinstance(cuda[key], float):
        print(f"{key:24s} cuda {cuda[key]:12.6g}  cpu {cpu[key]:12.6g}  rel {abs(cuda[key] - cpu[key]) / (abs(cpu[key]) + 1e-12):.2e}")
PY
log done
cp -r benchmarks/results/speed "$WORK/speed-results" 2>/dev/null
tar -C "$WORK" --exclude='*.pt' -czf "$OUT/visit.tar.gz" logs speed-results runs

#!/usr/bin/env bash
# One prepared GPU check of about 5 minutes, 9 at most (issue 16), for a machine whose python3 already has torch
# and the scientific stack but reaches no package index: it runs the working tree with PYTHONPATH=. and
# installs nothing. Writes every result into a scratch folder, packed after every step into $OUT/gpu_check.tar.gz
# (default OUT ./gpu_check_out; the device tool returns at most 8 files), with $OUT/summary.txt beside it:
#   cuda_tests.txt           the CUDA-only tests (skipped on every CPU run of the suite)
#   epoch_time_eager.*       benchmarks/epoch_time.py: fp32 / bf16 x channels_last on / off x batch 128 / 512,
#                            the loader's share of an epoch, DeviceLoader vs DataLoader
#   epoch_time_compiled.*    torch.compile at bf16, batch 128: compile time, epoch time, one recompile after pruning
#   prunetrain_overhead.txt  PruneTrain vs plain on digits (ResNet-32 depth): lasso cost, totals, batch adaptation
#   concurrency.*            k = 1, 2, 4, 8 small runs at once on the GPU: summed throughput
#   gpu_check.json           device facts, the OOM-driven largest batch, fused vs per-slice group lasso,
#                            epochs of the full chapter-3 training (fp32, bf16, and full-fast's path)
#   plan_full.txt            `python -m thesis_lib plan --profile full` calibrated on this GPU: the GPU hours
# Each step has its own time limit and a failing step does not stop the others; the exit code counts them.
set -u
cd "$(dirname "$0")/.."
RESULTS="${OUT:-gpu_check_out}"
mkdir -p "$RESULTS"
OUT=$(mktemp -d)
export PYTHONPATH=. PYTHONUNBUFFERED=1 THESIS_RESULTS="$OUT/results"
failures=0

pack() {  # the scratch folder (with the plan's calibration) as one archive, every step's last lines as the summary
    tar -czf "$RESULTS/gpu_check.tar.gz" -C "$OUT" .
    for file in "$OUT"/*.txt; do echo "== $(basename "$file")"; tail -n 12 "$file"; done > "$RESULTS/summary.txt"
}

step() {  # step NAME SECONDS COMMAND...: run with a time limit, output to $OUT/NAME.txt
    local name=$1 seconds=$2
    shift 2
    echo "== $name (at most ${seconds} s)"
    if ! timeout "$seconds" "$@" > "$OUT/$name.txt" 2>&1; then
        echo "   failed or timed out: see $name.txt in the archive"
        failures=$((failures + 1))
    fi
    tail -n 3 "$OUT/$name.txt"
    pack  # after every step, so that a kill at the call's limit still leaves the results so far
}

python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" \
    > "$OUT/device.txt" 2>&1 || { cat "$OUT/device.txt"; exit 1; }
cat "$OUT/device.txt"

step cuda_tests 90 python3 -m pytest -q -p no:cacheprovider -rs tests/test_surgery.py tests/test_training.py \
    tests/test_compile.py tests/test_distributed.py tests/methods -k cuda
step epoch_time_eager 90 python3 benchmarks/epoch_time.py --device cuda --n-train 50000 --num-workers 4 \
    --precision fp32 bf16 --channels-last on off --batch-size 128 512 --out "$OUT/epoch_time_eager.json"
step epoch_time_compiled 110 python3 benchmarks/epoch_time.py --device cuda --n-train 50000 --skip-loaders \
    --precision bf16 --compile always --batch-size 128 --recompile --out "$OUT/epoch_time_compiled.json"
step prunetrain_overhead 40 python3 benchmarks/prunetrain_overhead.py --device cuda --data digits --epochs 10 \
    --interval 2 --lasso-ratio 0.8 --threshold 3e-2 --widths 16 32 64 --blocks 5 --batch-size 64 --batch-adaptation
step concurrency 60 python3 benchmarks/concurrency.py --device cuda --net digits --processes 1 2 4 8 \
    --n-train 4096 --epochs 2 --out "$OUT/concurrency.json"
step gpu_check 70 python3 benchmarks/gpu_check.py --out "$OUT" --device cuda --n-train 50000 --epochs 2
step plan_full 80 python3 -m thesis_lib plan --profile full --steps 5

echo "$failures step(s) failed; results in $RESULTS/gpu_check.tar.gz"
exit "$failures"

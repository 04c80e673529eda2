#!/usr/bin/env bash
# One prepared GPU check of at most about 5 minutes (issue 16), for a machine whose python3 already has torch
# and the scientific stack but reaches no package index: it runs the working tree with PYTHONPATH=. and
# installs nothing. Writes every result into $OUT (default ./gpu_check_out):
#   cuda_tests.txt           the CUDA-only tests (skipped on every CPU run of the suite)
#   epoch_time_eager.*       benchmarks/epoch_time.py: fp32 / bf16 x channels_last on / off x batch 128 / 512,
#                            the loader's share of an epoch, DeviceLoader vs DataLoader
#   epoch_time_compiled.*    torch.compile at bf16, batch 128: compile time, epoch time, one recompile after pruning
#   prunetrain_overhead.txt  PruneTrain vs plain on digits (ResNet-32 depth): lasso cost, totals, batch adaptation
#   concurrency.*            k = 1, 2, 4, 8 small runs at once on the GPU: summed throughput
#   gpu_check.json           device facts, the OOM-driven largest batch, fused vs per-slice group lasso,
#                            epochs of the full chapter-3 training (fp32, bf16, and the profile's fast path)
# Each step has its own time limit and a failing step does not stop the others; the exit code counts them.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_check_out}"
mkdir -p "$OUT"
export PYTHONPATH=.
failures=0

step() {  # step NAME SECONDS COMMAND...: run with a time limit, output to $OUT/NAME.txt
    local name=$1 seconds=$2
    shift 2
    echo "== $name (at most ${seconds} s)"
    if ! timeout "$seconds" "$@" > "$OUT/$name.txt" 2>&1; then
        echo "   failed or timed out: see $OUT/$name.txt"
        failures=$((failures + 1))
    fi
    tail -n 3 "$OUT/$name.txt"
}

python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" \
    > "$OUT/device.txt" 2>&1 || { cat "$OUT/device.txt"; exit 1; }
cat "$OUT/device.txt"

step cuda_tests 100 python3 -m pytest -q -p no:cacheprovider -rs tests/test_surgery.py tests/test_training.py \
    tests/test_compile.py tests/test_distributed.py tests/methods -k cuda
step epoch_time_eager 100 python3 benchmarks/epoch_time.py --device cuda --n-train 50000 --num-workers 4 \
    --precision fp32 bf16 --channels-last on off --batch-size 128 512 --out "$OUT/epoch_time_eager.json"
step epoch_time_compiled 130 python3 benchmarks/epoch_time.py --device cuda --n-train 50000 --skip-loaders \
    --precision bf16 --compile always --batch-size 128 --recompile --out "$OUT/epoch_time_compiled.json"
step prunetrain_overhead 45 python3 benchmarks/prunetrain_overhead.py --device cuda --data digits --epochs 10 \
    --interval 2 --lasso-ratio 0.8 --threshold 3e-2 --widths 16 32 64 --blocks 5 --batch-size 64 --batch-adaptation
step concurrency 70 python3 benchmarks/concurrency.py --device cuda --net digits --processes 1 2 4 8 \
    --n-train 4096 --epochs 2 --out "$OUT/concurrency.json"
step gpu_check 80 python3 benchmarks/gpu_check.py --out "$OUT" --device cuda --n-train 50000 --epochs 2

echo "$failures step(s) failed; results in $OUT"
exit "$failures"

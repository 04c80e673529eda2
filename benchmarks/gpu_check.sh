#!/usr/bin/env bash
# One prepared GPU check of at most about 5 minutes (issue 16), for a machine whose python3 already has torch
# and the scientific stack but reaches no package index: it runs the working tree with PYTHONPATH=. and
# installs nothing. Writes every result into $OUT (default ./gpu_check_out):
#   cuda_tests.txt           the CUDA-only tests (skipped on every CPU run of the suite)
#   epoch_time_*.txt         benchmarks/epoch_time.py: DeviceLoader vs DataLoader, fp32 / bf16, batch 128 / 512
#   prunetrain_overhead.txt  benchmarks/prunetrain_overhead.py on the wide ResNet-32
#   gpu_check.json           device facts, the OOM-driven largest batch, epochs of the full chapter-3 training
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

step cuda_tests 60 python3 -m pytest -q -p no:cacheprovider -rs tests/test_surgery.py tests/test_training.py \
    tests/methods -k cuda
step epoch_time_fp32_128 40 python3 benchmarks/epoch_time.py --device cuda --precision fp32 --batch-size 128 \
    --n-train 50000 --num-workers 4
step epoch_time_bf16_128 40 python3 benchmarks/epoch_time.py --device cuda --precision bf16 --batch-size 128 \
    --n-train 50000 --num-workers 4
step epoch_time_bf16_512 40 python3 benchmarks/epoch_time.py --device cuda --precision bf16 --batch-size 512 \
    --n-train 50000 --num-workers 4
step prunetrain_overhead 40 python3 benchmarks/prunetrain_overhead.py --device cuda --train-size 8192 --epochs 4
step gpu_check 80 python3 benchmarks/gpu_check.py --out "$OUT" --device cuda --n-train 50000 --epochs 2

echo "$failures step(s) failed; results in $OUT"
exit "$failures"

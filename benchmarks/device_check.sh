#!/usr/bin/env bash
# Every GPU figure issue 3 asks for, in one call of the device tool (a few minutes on one H100 or
# H200; device time is short, so it is one prepared command). Nothing in CI runs this.
#
# The lent machine has its own python3 with PyTorch, NumPy, Pillow, h5py and tqdm, but no
# diskcache (the service, bench_hover.py) and no internet. Here, once per checkout:
#
#     echo /.whl/ >> .git/info/exclude
#     python3 -m pip download --no-deps --only-binary=:all: -d .whl diskcache==5.6.3
#
# then call the device tool with  command="bash benchmarks/device_check.sh", carry=[".whl"],
# timeout_s=540. The figures come back in $OUT (dense_*.txt, hover.txt, gpu.txt). Locally,
# DEVICE=cpu QUICK=1 bash benchmarks/device_check.sh runs the same steps small, as a check of
# the script.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
out=${OUT:-/tmp/device_check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
size=256; hovers=30; naive=20
if [ -n "${QUICK:-}" ]; then size=32; hovers=3; naive=2; fi

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
} 2>&1 | tee "$out/gpu.txt"

# Whole-image Jacobians at 256 x 256, float32: the default chunk budget (1 GiB), then a larger one,
# since a GPU has the memory to keep more colours in flight (the goal: <= 0.5 s for FunFuseAn,
# MaskNet and DeepFuse, <= 1.5 s for DeepPedestrian; at least half of the ideal ratio).
for budget in 1024 8192; do
  timeout 200 python3 benchmarks/bench_dense.py --device "$DEVICE" --size "$size" --naive-pixels "$naive" \
    --memory-mb "$budget" 2>&1 | tee "$out/dense_${budget}mb.txt"
done

# Hovers of all five models on the GPU, the naive method on the GPU in the same run.
timeout 200 python3 benchmarks/bench_hover.py --device "$DEVICE" --size "$size" --hovers "$hovers" \
  --naive-pixels 3 --processes 0 2>&1 | tee "$out/hover.txt"

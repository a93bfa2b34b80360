# GPU check for cellflow (issue #5): bash .ci/gpu_check.sh from the repo root of a machine with a CUDA GPU.
# Not part of CI (CI has no GPU). EB is read from $CELLFLOW_DATA_DIR (default ../shared/datasets);
# wheels in .whl/ (if present) are installed first, for a machine without a package index.
# DEV=cpu SMALL=1 bash .ci/gpu_check.sh runs the same commands tiny, on the CPU, here.
# On one H200 (session 11) it took about 10 minutes; one EB model there took over 150 s on either device.
set -x
DEV=${DEV:-cuda}; OUT=${OUT:-/tmp/gpuout}; mkdir -p $OUT
EB=${CELLFLOW_DATA_DIR:-../shared/datasets}/eb.h5ad
export PYTHONUNBUFFERED=1
if [ -d .whl ] && [ "$DEV" = cuda ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv
fi
python3 -c "import torch, cellflow, ot, anndata; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '', 'POT', ot.__version__, 'anndata', anndata.__version__)" || exit 1
if [ -n "$SMALL" ]; then STEPS=50; REP=1; Q=--quick; IMG=5; PRESET=digits; else STEPS=2000; REP=3; Q=; IMG=200; PRESET=cifar10; fi
# 1. the CUDA tests
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/models/test_cuda.py 2>&1 | tail -15 | tee $OUT/pytest_cuda.txt
# 2. Sinkhorn n=4096 (d=2, 50), pushing 100k cells, training steps/s (ours and torchcfm) on the GPU
timeout 200 python3 -m cellflow bench speed --device $DEV --sections sinkhorn push throughput --repeats $REP $Q --out $OUT/speed_$DEV.json 2>&1 | grep -v Warning | tail -30
# 3. EB held out k=2, OT-CFM seed 0, the paper's settings: GPU and this machine's CPU
for d in $DEV cpu; do
  timeout 300 python3 -m cellflow evaluate $EB --time-key time_point --methods ot --seeds 0 --held-out 2 --steps $STEPS --device $d --out $OUT/eb_$d.csv --overwrite --quiet 2>&1 | tail -4
  [ "$DEV" = cpu ] && break
done
# 4. the DDP path under torchrun (NCCL on CUDA): images, CIFAR-shaped random data, steps/s and memory
timeout 120 torchrun --nproc_per_node 1 -m cellflow train images --random-data 4096 --preset $PRESET --steps $IMG --batch-size 128 --device $DEV --out $OUT/img --no-dopri5 --quiet 2>&1 | tail -5
cat $OUT/img/metrics.json 2>/dev/null | head -40
timeout 90 torchrun --nproc_per_node 1 -m cellflow fit $EB --time-key time_point --n-pcs 5 --whiten --steps $STEPS --device $DEV --out /tmp/ddp.h5ad --no-velocity --overwrite --quiet 2>&1 | tail -3
ls -la $OUT $OUT/img

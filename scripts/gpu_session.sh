#!/usr/bin/env bash
# Everything ldmprobe needs a lent GPU for, as one device command (see the device tool's notes).
# Prepare here first:  scripts/gpu_wheels.sh      (the wheels the GPU image lacks, into .whl/)
# Then one device call:
#   run(command="bash scripts/gpu_session.sh", carry=[".whl"], timeout_s=600)
# and, if training had to stop at its time limit, the same call again at once (the machine
# stays warm about 30 s; the training resumes from its checkpoints in /tmp/refwork2-gpu).
#
# Steps, each skipped when already done on this machine:
#   1. install the carried wheels to /tmp/site and ldmprobe itself (no index, no downloads);
#   2. benchmarks/gpu_check.py (CUDA path, tiny models, every architecture) -> $OUT/gpu_check.txt;
#   3. reference world 2: training, evaluation at the spec's settings and at guidance 7.5, card
#      (scripts/train_reference_world2.sh) -> $OUT/train.log, and the weights folder packed
#      as $OUT/world2.tar.gz.partNN (parts of 15 MiB: the device returns at most 8 files of
#      16 MiB) with $OUT/world2.sha256.
# Back here: cat the parts in order, check world2.sha256, untar into a work folder (never into
# ldmprobe/reference/weights), and read WORK/weights/MODEL_CARD.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
START=$SECONDS
LIMIT=${LIMIT:-540}   # seconds this call may use before packing what it has
WORK=${WORK:-/tmp/refwork2-gpu}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

if [ ! -f /tmp/site/.done ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_session: installing the carried wheels failed (run scripts/gpu_wheels.sh here and carry .whl)"; exit 2; }
  touch /tmp/site/.done
fi
export PYTHONPATH=/tmp/site:$PWD
python3 -c "import torch, diffusers, open_clip, ldmprobe; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" \
  | tee "$OUT/versions.txt"

if [ ! -f /tmp/gpu_check.done ]; then
  timeout $((LIMIT / 3)) python3 benchmarks/gpu_check.py --json 2>&1 | tee "$OUT/gpu_check.txt" | tail -n 40
  echo "gpu_check exit ${PIPESTATUS[0]} after $((SECONDS - START)) s"
  touch /tmp/gpu_check.done
fi

left=$((LIMIT - (SECONDS - START)))
if [ "$left" -gt 60 ]; then
  PYTHON=python3 timeout "$left" bash scripts/train_reference_world2.sh "$WORK" 2>&1 | tail -n 60
  echo "reference world 2 script exit ${PIPESTATUS[0]} after $((SECONDS - START)) s"
fi
cp "$WORK/train.log" "$OUT/train.log" 2>/dev/null
if [ -d "$WORK/weights" ]; then
  tar -C "$WORK" -czf /tmp/world2.tar.gz weights $(cd "$WORK" && ls evaluation-*.json 2>/dev/null)
  (cd /tmp && sha256sum world2.tar.gz > "$OUT/world2.sha256")
  split -b 15M -d /tmp/world2.tar.gz "$OUT/world2.tar.gz.part"
  ls -l "$OUT"
fi

#!/usr/bin/env bash
# Fetch, here, the wheels a lent GPU machine lacks for ldmprobe and reference_world (its image
# has torch, transformers, accelerate, numpy, scipy, pillow, rich, click, jinja2, timm,
# safetensors, huggingface-hub; not these), for its Python 3.12 on x86-64, into .whl/ (ignored
# by git, carried by the device call: `carry: [".whl"]`). Versions are this machine's own, so
# both sides run the same code. Then on the device: scripts/gpu_session.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PY=${PYTHON:-.venv/bin/python}
rm -rf .whl && mkdir -p .whl
pkgs=()
for name in diffusers open_clip_torch ftfy wcwidth platformdirs jsonschema jsonschema-specifications \
            referencing rpds-py importlib_metadata; do
  version=$("$PY" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
  [ -n "$version" ] || { echo "gpu_wheels: $name is not installed here; install the project first" >&2; exit 2; }
  pkgs+=("$name==$version")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${pkgs[@]}"
ls .whl >&2
du -sh .whl >&2

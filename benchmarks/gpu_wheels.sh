#!/usr/bin/env bash
# Wheels for `benchmarks/gpu_check.py` on a GPU box without internet (Linux x86_64, Python
# 3.11 or $PYVER, a CUDA build of torch already installed). Torch is NOT downloaded here: its
# CUDA wheels are gigabytes. Nor are the packages torch itself brings (filelock, fsspec,
# jinja2, networkx, setuptools, sympy, typing-extensions).
#
#   benchmarks/gpu_wheels.sh [FOLDER]          # here, with internet: FOLDER (default gpu-wheels/)
#
# On the GPU box, in a checkout of this repository with FOLDER copied beside it:
#   python -m pip install --no-index --find-links gpu-wheels -r gpu-wheels/requirements.txt
#   python -m pip install --no-index --no-deps gpu-wheels/peft_utils-*.whl
#   python benchmarks/gpu_check.py            # or: make gpu-check PY=python
#
# What travels: the pinned stack as this venv has it (transformers 4.57.6, adapters 1.3.0,
# peft, accelerate and everything they and gpu_check's imports need, versions from this
# venv), and the project's own wheel installed without its dependencies (the notebook,
# plotting and tuning stack that gpu_check does not import). No model weights: XLM-R-large is
# built from its shipped config and e5-small from its shipped config where
# models/multilingual-e5-small (449 MB) is not there, both with random weights.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-gpu-wheels}
PYVER=${PYVER:-3.11}          # the GPU box's Python (PYVER=3.12 ... for another one)
ABI=cp${PYVER/./}
LIMIT_MIB=64

rm -rf "$OUT"
mkdir -p "$OUT"
# The closure of what gpu_check imports, pinned to this venv's versions, less torch's own.
"$PY" - >"$OUT/requirements.txt" <<'EOF'
from importlib.metadata import PackageNotFoundError, distribution
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

def closure(names):
    seen = {}
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:     # a marker-only dependency absent here
            continue
        seen[name] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen

wanted = closure(["transformers", "adapters", "peft", "accelerate", "pandas", "numpy", "pyyaml"])
on_the_box = closure(["torch"])          # torch and what it installed there
for name, version in sorted(wanted.items()):
    if name not in on_the_box and not name.startswith(("nvidia-", "triton")):
        print(f"{name}=={version}")
EOF
"$PY" -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --python-version "$PYVER" --implementation cp --abi "$ABI" --abi abi3 --abi none \
    -r "$OUT/requirements.txt" -d "$OUT"
"$PY" -m pip wheel -q --no-deps --no-build-isolation . -w "$OUT"
rm -rf build

size=$(du -sm "$OUT" | cut -f1)
echo "$OUT: $(ls "$OUT"/*.whl | wc -l) wheels, ${size} MiB"
cat "$OUT/requirements.txt"
if [ "$size" -ge "$LIMIT_MIB" ]; then
    echo "error: ${size} MiB, over the ${LIMIT_MIB} MiB a device session carries" >&2
    exit 1
fi

#!/bin/bash
# Prepare .gpu/, what benchmarks/gpu.sh (and the other gpu_*.sh scripts) need beside a fresh
# clone on a GPU machine that has Python, torch and CUDA but reaches no package registry.
#
# Usage, on this (CPU) machine, from the project root (about 2 minutes; PyPI must be reachable):
#     FEWSHOT_DATA=../shared/data/omniglot bash benchmarks/gpu_bundle.sh [OUT_DIR]   # default .gpu
# then on the GPU machine, from the project root of a tree holding .gpu/:   bash benchmarks/gpu.sh
#
# What goes in (about 8 MB), for the GPU machine's Python (GPU_PYTHON, default 3.12: the
# GPU machines this was made for have Python 3.12.3 with torch, torchvision, click, pandas,
# scipy, cython, cloudpickle and pytest):
#   learn2learn-0.2.0-cp312-*.whl  built as the Makefile builds it (its .pyx re-cythonized, no
#                                  build isolation, no declared dependencies), by a Python of that
#                                  version found here (PYTHON_FOR_WHEELS, python3.12 on the PATH,
#                                  or ~/.pyenv/versions/3.12.*). Without one, the sdist goes in
#                                  instead and setup.sh builds it there (its cython and a C compiler).
#   gym-*.whl, gym_notices-*.whl   pure Python: learn2learn imports gym, absent there
#   EXTRA                          more requirements, space-separated (e.g. EXTRA="click==8.1.8"),
#                                  as wheels for that Python (binary ones as manylinux x86_64)
#   omni.tgz                       Omniglot from $FEWSHOT_DATA: images_background/,
#                                  images_evaluation/ and splits/
#   setup.sh                       to source there: installs the wheels into a temporary site
#                                  folder (GPU_SITE, default /tmp/site), unpacks Omniglot (into
#                                  GPU_DATA, default /tmp/data) and exports PYTHONPATH and
#                                  FEWSHOT_DATA
# .gpu/ is git-ignored: it is rebuilt, never committed.
set -euo pipefail
OUT_DIR=${1:-.gpu}
GPU_PYTHON=${GPU_PYTHON:-3.12}
L2L=learn2learn==0.2.0
DATA=${FEWSHOT_DATA:-}
if [ -z "$DATA" ] || [ ! -d "$DATA/images_background" ]; then
  echo "error: FEWSHOT_DATA must point at an extracted Omniglot (images_background/ ...)" >&2
  exit 2
fi

find_python() {  # a Python of version GPU_PYTHON on this machine, or nothing
  local candidate
  for candidate in ${PYTHON_FOR_WHEELS:-} "python$GPU_PYTHON" "$HOME"/.pyenv/versions/"$GPU_PYTHON".*/bin/python3; do
    if command -v "$candidate" > /dev/null 2>&1 && \
       [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2> /dev/null)" = "$GPU_PYTHON" ]; then
      command -v "$candidate"
      return
    fi
  done
}

rm -rf "$OUT_DIR"
mkdir -p "$OUT_DIR"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PYTHON=$(find_python)
if [ -n "$PYTHON" ]; then
  echo "building $L2L for Python $GPU_PYTHON with $PYTHON"
  "$PYTHON" -m venv "$WORK/venv"
  PIP="$WORK/venv/bin/python -m pip"
  $PIP install -q --upgrade pip setuptools wheel Cython
  # learn2learn's shipped C files do not compile on Python >= 3.11: re-cythonize (Makefile).
  $PIP wheel -q --no-build-isolation --no-deps --config-settings=--build-option=build_ext \
    -w "$OUT_DIR" "$L2L"
  $PIP wheel -q --no-deps -w "$OUT_DIR" gym gym_notices
else
  echo "no Python $GPU_PYTHON here: shipping the $L2L sdist, which setup.sh builds there"
  PIP="python3 -m pip"
  $PIP download -q --no-deps --no-binary :all: -d "$OUT_DIR" "$L2L"
  $PIP download -q --no-deps --no-binary :all: -d "$WORK" gym gym_notices
  $PIP wheel -q --no-deps -w "$OUT_DIR" "$WORK"/*
fi
if [ -n "${EXTRA:-}" ]; then
  # shellcheck disable=SC2086  # EXTRA is a list of requirements
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$GPU_PYTHON" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$OUT_DIR" $EXTRA
fi
tar czf "$OUT_DIR/omni.tgz" -C "$DATA" images_background images_evaluation \
  $( [ -d "$DATA/splits" ] && echo splits )

cat > "$OUT_DIR/setup.sh" <<'SETUP'
# Source from the project root on the GPU machine: `source .gpu/setup.sh` (made by
# benchmarks/gpu_bundle.sh). Installs this folder's wheels into GPU_SITE (default /tmp/site),
# unpacks Omniglot into GPU_DATA (default /tmp/data), and exports PYTHONPATH (that site folder and
# the project root) and FEWSHOT_DATA. Returns non-zero, with a message, when a step fails.
_bundle=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GPU_SITE=${GPU_SITE:-/tmp/site}
GPU_DATA=${GPU_DATA:-/tmp/data}
_fewshot_setup() {
  local sdist wheels
  mkdir -p "$GPU_SITE" "$GPU_DATA" || return 1
  wheels=("$_bundle"/*.whl)
  sdist=$(ls "$_bundle"/learn2learn-*.tar.gz 2> /dev/null | head -1)
  if [ -n "$sdist" ]; then  # no wheel could be built beforehand: build it here
    python3 -m pip wheel -q --no-build-isolation --no-deps --no-cache-dir \
      --config-settings=--build-option=build_ext -w "$GPU_SITE.wheels" "$sdist" || return 1
    wheels+=("$GPU_SITE.wheels"/*.whl)
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$GPU_SITE" "${wheels[@]}" || return 1
  # learn2learn's wheel carries a top-level `tests` package: it must not shadow anyone's tests.
  rm -rf "$GPU_SITE/tests"
  tar xzf "$_bundle/omni.tgz" -C "$GPU_DATA" || return 1
}
if _fewshot_setup; then
  export PYTHONPATH="$GPU_SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  export FEWSHOT_DATA="$GPU_DATA" PYTHONUNBUFFERED=1
  echo "setup: wheels in $GPU_SITE, Omniglot in $FEWSHOT_DATA"
else
  echo "error: .gpu/setup.sh failed (see above)" >&2
  false
fi
SETUP
ls -l "$OUT_DIR"
du -sh "$OUT_DIR"

#!/bin/bash
# Device check of the vmap MAML engine, in one call: CUDA tests, both engines' timings on the GPU,
# and (for an idle-machine reference) on 2 CPU threads of the same machine.
#
# Usage, from the project root on a machine with a GPU (learn2learn and gym wheels for its Python
# in $WHEELS when they are not installed there):
#     WHEELS=.gpu bash benchmarks/gpu_engines.sh
set -o pipefail
WHEELS=${WHEELS:-.gpu}
if ! python3 -c "import learn2learn" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD:$PYTHONPATH PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
echo "== tests/test_maml_vmap.py (CUDA variants included)"
python3 -m pytest -x -q -p no:cacheprovider tests/test_maml_vmap.py 2>&1 | grep -v -i gym
echo "== both engines on the GPU"
python3 -m benchmarks.engines --device cuda --iterations 5 2>&1 | grep -v -i gym
echo "== both engines on 2 CPU threads of this (idle) machine"
timeout 200 python3 -m benchmarks.engines --device cpu --threads 2 --iterations 3 --cells 5w1s,5w5s,20w1s --only train 2>&1 | grep -v -i gym
exit 0

#!/bin/bash
# What produced results/gpu/h100_side_by_side.txt (kept for the record). Needs .gpu/ (wheels, Omniglot
# tarball, setup.sh; see benchmarks/gpu.sh). Trainings side by side oversubscribed the CPU: prefer benchmarks/gpu.sh.
# On one GPU: CUDA tests, then the four MAML cells (paper settings, vmap engine) and ProtoNet
# trained side by side on one GPU under a time limit, each tested with the reproduce protocol.
START=$(date +%s); stamp() { echo "=== $1 ($(( $(date +%s) - START )) s)"; }
source .gpu/setup.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -m fewshot_cli data --split random 2>&1 | grep -v -i gym | tail -2   # builds the tensor cache once
stamp setup
LIMIT=${LIMIT:-3.0}
R=/tmp/runs; mkdir -p $R
for cell in 5w1s 5w5s 20w1s 20w5s; do
  w=${cell%w*}; s=${cell#*w}; s=${s%s}
  python3 -m fewshot_cli train maml --engine vmap --split random --rotations --ways $w --shots $s \
    --iterations 60000 --time-limit $LIMIT --val-every 250 --val-episodes 100 --device cuda --quiet \
    --out $R/maml-$cell > $R/maml-$cell.log 2>&1 &
done
python3 -m fewshot_cli train protonet --split vinyals --shots 1 --iterations 20000 --time-limit $LIMIT \
  --val-every 250 --val-episodes 100 --device cuda --quiet --out $R/protonet-60w1s > $R/protonet.log 2>&1 &
stamp "trainings started"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_maml_vmap.py tests/test_engine.py tests/test_maml.py -k "cuda or device" 2>&1 | grep -v -i gym | tail -8
stamp tests
wait
stamp "trainings done"
for cell in 5w1s 5w5s 20w1s 20w5s; do
  w=${cell%w*}; s=${cell#*w}; s=${s%s}
  python3 -m fewshot_cli eval $R/maml-$cell --ways $w --shots $s --queries 15 --episodes 600 --device cuda --csv $R/eval.csv 2>&1 | grep -v -i gym | tail -1 &
done
for w in 5 20; do
  python3 -m fewshot_cli eval $R/protonet-60w1s --ways $w --shots 1 --queries 15 --episodes 1000 --device cuda --csv $R/eval.csv 2>&1 | grep -v -i gym | tail -1 &
done
wait
python3 -m fewshot_cli eval $R/maml-5w1s --ways 20 --shots 1 --episodes 50 --device cuda 2>&1 | grep -v -i gym | tail -1
echo "eval at other ways on cuda exit: ${PIPESTATUS[0]}"
stamp evals
tail -n 2 $R/*.log
for d in $R/*/; do echo "== $d"; cat $d/log.csv; done
tar czf $OUT/gpu-runs.tgz -C $R --exclude='*.pt' .
cp $R/eval.csv $OUT/ 2>/dev/null
stamp done

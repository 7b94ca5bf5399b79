#!/bin/bash
# One GPU check of the MAML engines, for a machine with CUDA, Python 3.12 and torch, no internet.
#
# Run from the project root of a tree holding .gpu/ (learn2learn + gym wheels and Omniglot as
# .gpu/omni.tgz, see .gpu/setup.sh; `bash benchmarks/gpu_bundle.sh` makes it on a CPU machine),
# copied with the tree to the GPU machine: `bash benchmarks/gpu.sh`. About 6 minutes,
# never more than TOTAL (570 s): each part is bounded by `timeout`, at most its own limit and
# what is left of TOTAL, so one slow part cannot eat the others' time. Prints everything; copies
# small result files into $OUT (8 of them, to keep what comes back small):
#   gpu-info.txt, gpu-tests.txt, gpu-engines.txt, gpu-batches.txt, gpu-graph.txt,
#   paper-5w1s-config.json, paper-5w1s-log.csv, paper-5w1s-eval.csv
#
# Parts: 1. setup (wheels into /tmp/site, Omniglot into /tmp/data)        ~30 s
#        2. the CUDA tests (pytest -k cuda: engines' meta-gradients, adapted
#           predictions, both engines' training and evaluation on cuda, the
#           captured step against the eager one, batched evaluation)     <= 120 s
#        3. python -m benchmarks.engines --device cuda: every cell, both
#           engines, s/iteration and ratio; test episodes; ProtoNet steps <= 90 s
#        3b. python -m benchmarks.batches --device cuda: a 5w1s meta-batch
#           built on the GPU beside today's sampling, and its share of a
#           vmap step (the first load of the data builds its cache)      <= 80 s
#        3c. python -m benchmarks.graph --device cuda --channels-last: the
#           eager vmap step beside the captured one (and channels-last),
#           every cell's paper settings, fp32 and tf32                    <= 100 s
#        4. `paper`-budget MAML 5w1s (strided Conv-4, 1 query, meta-batch 32,
#           second order, Adam 1e-3) with the vmap engine (its step captured where
#           --cuda-graph's default, auto, captures it) for 1 minute (after loading the
#           data), then 200 test episodes                                 <= 170 s
# The whole test suite is left out: under pytest-xdist (8 or 14 workers, torch's default
# threads each) it finished 22 tests in 320 s there; cause not established.
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
START=$(date +%s)
TOTAL=570
stamp() { echo; echo "=== $1 ($(( $(date +%s) - START )) s elapsed)"; }
# Seconds a part may take: its own limit, or what is left of TOTAL if less (at least 1: a
# `timeout 0` would not limit it at all).
limit() {
  local left=$(( TOTAL - ($(date +%s) - START) ))
  (( left < $1 )) && echo $(( left > 1 ? left : 1 )) || echo "$1"
}

stamp "1. setup"
source .gpu/setup.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu-info.txt"
python3 -c "import torch, learn2learn; print('torch', torch.__version__, 'learn2learn', learn2learn.__version__, torch.cuda.get_device_name())" 2>&1 \
  | grep -v -i gym | tee -a "$OUT/gpu-info.txt"

stamp "2. CUDA tests"
timeout "$(limit 120)" python3 -m pytest -q -x -p no:cacheprovider -k cuda tests/test_maml_vmap.py tests/test_engine.py \
  tests/test_training.py tests/test_batches.py tests/test_cuda_graph.py tests/test_evaluate_batches.py 2>&1 \
  | tee "$OUT/gpu-tests.txt" | tail -15
echo "tests exit: ${PIPESTATUS[0]}"

stamp "3. engines side by side on cuda (s/iteration, ratio) and ProtoNet steps"
timeout "$(limit 90)" python3 -m benchmarks.engines --device cuda --iterations 3 2>&1 | grep -v -i gym | tee "$OUT/gpu-engines.txt"
echo "engines exit: ${PIPESTATUS[0]}"

stamp "3b. meta-batches built on the GPU beside today's host sampling (and the data's cache)"
timeout "$(limit 80)" python3 -m benchmarks.batches --device cuda --iterations 20 --steps 10 2>&1 | grep -v -i gym | tee "$OUT/gpu-batches.txt"
echo "batches exit: ${PIPESTATUS[0]}"

stamp "3c. the captured training step beside the eager vmap step (fp32, tf32, channels-last)"
timeout "$(limit 100)" python3 -m benchmarks.graph --device cuda --iterations 10 --channels-last 2>&1 | grep -v -i gym | tee "$OUT/gpu-graph.txt"
echo "graph exit: ${PIPESTATUS[0]}"

stamp "4. paper-budget MAML 5w1s, vmap engine, cuda, 1 minute of training"
RUN=/tmp/paper-5w1s
rm -rf "$RUN"
# The paper budget's MAML training (60000 iterations, its defaults), cut by --time-limit.
timeout "$(limit 140)" python3 -m fewshot_cli train maml --engine vmap --split random --rotations --shots 1 \
  --iterations 60000 --time-limit 1 --val-every 100 --val-episodes 100 --device cuda --quiet \
  --out "$RUN" 2>&1 | grep -v -i gym | tail -3
# The CSV is written beside the run (its .lock file would take one of $OUT's 8 places).
timeout "$(limit 30)" python3 -m fewshot_cli eval "$RUN" --episodes 200 --device cuda --csv "$RUN/eval.csv" 2>&1 \
  | grep -v -i gym | tail -2
cp "$RUN/config.json" "$OUT/paper-5w1s-config.json" 2>/dev/null
cp "$RUN/log.csv" "$OUT/paper-5w1s-log.csv" 2>/dev/null
cp "$RUN/eval.csv" "$OUT/paper-5w1s-eval.csv" 2>/dev/null
cat "$RUN/log.csv" 2>/dev/null
python3 - "$RUN/log.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
if rows:
    last = rows[-1]
    per_it = float(last["elapsed_seconds"]) / int(last["iteration"])
    print(f"{last['iteration']} meta-iterations in {float(last['elapsed_seconds']):.0f} s "
          f"(validation included): {per_it:.3f} s/iteration; 60000 iterations: {per_it * 60000 / 3600:.1f} h")
PY
stamp "done"
ls -l "$OUT"

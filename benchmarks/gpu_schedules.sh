#!/bin/bash
# Schedule trials for the cpu budget's MAML cells, on one GPU, in one call.
#
# The cpu budget runs on CPUs; this script measures, on a GPU and with the vmap engine (the same
# meta-gradient as learn2learn's loop), schedules too long to try there: starting the 5w5s,
# 20w1s and 20w5s trainings from the cpu 5w1s cell's model (--init-from), and the 5w1s cell
# itself continued past its 3000 iterations. First trials (`bash benchmarks/gpu_schedules.sh 1`):
# four trainings side by side beside the CUDA tests; second (`... 2`): five 20-way trainings.
# Each training is bounded in time, then tested on 600 episodes.
#
# Run from the project root with .gpu/ (see benchmarks/gpu.sh) and the cpu 5w1s run's
# checkpoints (results/cpu/runs/maml-5w1s/{best,last}.pt) beside it: `bash benchmarks/gpu_schedules.sh`.
# About 7 minutes. Brings back gpu-tests.txt, trials.txt (every validation curve and test row)
# and trials.tgz (the run directories' logs and configurations, no checkpoints).
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
START=$(date +%s)
stamp() { echo; echo "=== $1 ($(( $(date +%s) - START )) s elapsed)"; }

stamp "setup"
source .gpu/setup.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
export OMP_NUM_THREADS=3
T=/tmp/trials
rm -rf "$T" && mkdir -p "$T"
SOURCE=results/cpu/runs/maml-5w1s
COMMON=(--split random --rotations --meta-batch 16 --lr 3e-3 --engine vmap --device cuda --quiet
        --val-every 100 --val-episodes 50 --init-from "$SOURCE")

trial() {  # NAME SECONDS ARGS...: train (bounded by SECONDS), then test best.pt on 600 episodes
  local name=$1 seconds=$2
  shift 2
  timeout "$seconds" python3 -m fewshot_cli train maml --out "$T/$name" "$@" > "$T/$name.log" 2>&1
  echo "train exit $?" >> "$T/$name.log"
  timeout 60 python3 -m fewshot_cli eval "$T/$name" --episodes 600 --device cuda --quiet \
    --csv "$T/$name/eval.csv" >> "$T/$name.log" 2>&1
}

if [ "${1:-1}" = 1 ]; then
  stamp "CUDA tests (in the background) and four trainings side by side"
  timeout 150 python3 -m pytest -q -p no:cacheprovider -k cuda tests/test_maml_vmap.py \
    tests/test_engine.py tests/test_training.py > "$OUT/gpu-tests.txt" 2>&1 &

  trial 20w1s-from-5w1s 330 --ways 20 --shots 1 --queries 5 --iterations 1000 "${COMMON[@]}" &
  trial 20w5s-fo-from-5w1s 330 --ways 20 --shots 5 --first-order --iterations 600 \
    --lr-halve-every 200 "${COMMON[@]}" &
  trial 5w5s-from-5w1s 330 --ways 5 --shots 5 --iterations 1000 "${COMMON[@]}" &
  (
    # The cpu 5w1s cell (3000 iterations, Adam halved every 1000) continued to 6000: resuming is
    # exact, so this is that schedule at 6000 iterations (halved at 3000, 4000, 5000 too).
    cp -r "$SOURCE" "$T/5w1s-to-6000"
    timeout 330 python3 -m fewshot_cli train maml --resume "$T/5w1s-to-6000" --iterations 6000 \
      --device cuda --quiet > "$T/5w1s-to-6000.log" 2>&1
    echo "train exit $?" >> "$T/5w1s-to-6000.log"
    timeout 60 python3 -m fewshot_cli eval "$T/5w1s-to-6000" --episodes 600 --device cuda \
      --quiet --csv "$T/5w1s-to-6000/eval.csv" >> "$T/5w1s-to-6000.log" 2>&1
    timeout 60 python3 -m fewshot_cli eval "$T/5w1s-to-6000/last.pt" --episodes 600 \
      --device cuda --quiet --csv "$T/5w1s-to-6000/eval.csv" >> "$T/5w1s-to-6000.log" 2>&1
  ) &
  wait
else
  # Second trials: the 20-way cells again, after the new head of a started run became the random
  # one (the first trials started them from a zero head), at three meta learning rate schedules.
  stamp "five trainings side by side"
  trial 20w1s-lr3e-3 300 --ways 20 --shots 1 --queries 5 --iterations 1000 "${COMMON[@]}" &
  trial 20w1s-lr3e-3-halve250 300 --ways 20 --shots 1 --queries 5 --iterations 1000 \
    --lr-halve-every 250 "${COMMON[@]}" &
  trial 20w1s-lr1e-3 300 --ways 20 --shots 1 --queries 5 --iterations 1000 "${COMMON[@]}" --lr 1e-3 &
  trial 20w5s-fo-lr3e-3-halve200 300 --ways 20 --shots 5 --first-order --iterations 600 \
    --lr-halve-every 200 "${COMMON[@]}" &
  trial 20w5s-fo-lr1e-3 300 --ways 20 --shots 5 --first-order --iterations 600 "${COMMON[@]}" --lr 1e-3 &
  wait
fi

stamp "results"
[ -f "$OUT/gpu-tests.txt" ] && tail -3 "$OUT/gpu-tests.txt"
for run in "$T"/*/; do
  name=$(basename "$run")
  echo "--- $name"
  grep -v -i gym "$T/$name.log" | tail -4
  cat "$run/log.csv"
  [ -f "$run/eval.csv" ] && cut -d, -f2,20-22,27,28 "$run/eval.csv"
done 2>&1 | tee "$OUT/trials.txt"
rm -f "$T"/*/*.pt
tar czf "$OUT/trials.tgz" -C "$T" .
stamp "done"

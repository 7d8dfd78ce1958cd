#!/usr/bin/env bash
# The book's GPU run, prepared for one bare GPU machine (CUDA torch installed; no Jupyter, maybe no
# network). From the repository root:
#
#   bash scripts/gpu_run.sh                  # every step below, in order
#   bash scripts/gpu_run.sh bench lecture    # only some steps (setup always runs)
#   bash scripts/gpu_run.sh --dry-run        # the same steps on the CPU with the smoke preset,
#                                            # writing only under runs/gpu_run_dry/ (about 3 minutes on
#                                            # a 2-core CPU, 1 of them compiling): try the script there
#                                            # before spending GPU time on it
#
# Steps (chapter 7 before the lecture run: its outputs are what the book commits, so a run cut short
# by a time limit has them first):
#   setup     install what is missing: from the wheels in .whl/ if there are any (offline; fetch them
#             beforehand with scripts/gpu_wheels.sh), else with pip; check the GPU and the data
#   bench     python -m gptlib bench --device cuda --json book/results/bench_gpu.json
#   chapter7  re-executes book/07_train_gpt.ipynb in place on the GPU (GPTLIB_PRESET unset: the
#             lecture preset), which also records the ladder's top rung in book/results/ladder.json
#             (GPTLIB_RESULTS=book/results)
#   lecture   python -m gptlib train --preset lecture --out runs/lecture (5,000 steps; replaces a
#             previous runs/lecture), printing the loss at each evaluation and a sample
#   compile   times 300 lecture steps with and without torch.compile (is compiling worth it?)
#
# Time, estimated (not yet measured here): nanoGPT's README reports about 3 minutes on one A100 for
# this model and data (its config/train_shakespeare_char.py, with torch.compile and twice as many
# evaluations as the lecture preset), so on an A100 or newer expect 2-3 minutes for each of
# `chapter7` and `lecture` and about a minute each for `bench` and `compile`: under 10 minutes of GPU
# time in all. A T4 takes several times longer: run the steps one or two at a time there.
#
# Logs: everything printed goes to $OUT/gpu_run.log (OUT defaults to runs/gpu_run/), and the results
# are copied there too: bench_gpu.json, lecture.log, 07_train_gpt.ipynb, ladder.json.
# Data: Tiny Shakespeare is downloaded on first use; offline, set GPTLIB_DATA to a copy or put one at
# data/tinyshakespeare.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
py=${PYTHON:-python3}
wheels=${WHEELS:-$root/.whl}
dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
if (( dry )); then  # the smoke preset on the CPU; nothing under book/ is written
  device=cpu preset=smoke runs=runs/gpu_run_dry out=${OUT:-$root/runs/gpu_run_dry/out}
  bench_json=$out/bench_gpu.json bench_extra=(--preset smoke --rounds 1 --new-tokens 20)
  export GPTLIB_PRESET=smoke
else
  device=cuda preset=lecture runs=runs out=${OUT:-$root/runs/gpu_run}
  bench_json=book/results/bench_gpu.json bench_extra=()
  unset GPTLIB_PRESET  # the notebook picks its preset by device: lecture on a GPU
fi
mkdir -p "$out"
exec > >(tee -a "$out/gpu_run.log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" GPU_RUN_DEVICE=$device

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(bench chapter7 lecture compile)
for step in "${steps[@]}"; do
  case $step in bench|lecture|chapter7|compile) ;; *) echo "unknown step '$step'" >&2; exit 2 ;; esac
done
timings=()
started=$SECONDS
mark() { timings+=("$1 $(( SECONDS - $2 ))s"); }

# --- setup ---------------------------------------------------------------------------------------
t=$SECONDS
echo "== setup ($(date -u '+%Y-%m-%d %H:%M UTC'))"
"$py" - <<'EOF'  # first the GPU: nothing is installed on a machine without one
import os

import torch

from gptlib.run import describe_plan
from gptlib.speed import speed_plan

print(f"torch {torch.__version__}, CUDA {torch.version.cuda}")
device = os.environ["GPU_RUN_DEVICE"]
if device == "cuda":
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: this script is for a GPU machine (--dry-run tries it on the CPU)")
    print(f"GPU: {torch.cuda.get_device_name()}, compute capability {torch.cuda.get_device_capability()}")
print(f"speed plan on {device}: {describe_plan(speed_plan(device))}")
EOF
if (( !dry )) && command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
fi
missing=$("$py" - <<'EOF'
import importlib.util
need = {"tqdm": "tqdm", "numpy": "numpy", "matplotlib": "matplotlib", "ipywidgets": "ipywidgets",
        "nbclient": "nbclient", "nbformat": "nbformat", "ipykernel": "ipykernel", "jupyter_core": "jupyter-core"}
print(" ".join(pkg for module, pkg in need.items() if importlib.util.find_spec(module) is None))
EOF
)
if [ -n "$missing" ]; then
  echo "missing: $missing"
  if compgen -G "$wheels/*.whl" > /dev/null; then
    site=${GPU_RUN_SITE:-/tmp/gptlib-site}
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
      "$wheels"/*.whl
    export PYTHONPATH="$PYTHONPATH:$site" PATH="$site/bin:$PATH"
    echo "installed $(ls "$wheels"/*.whl | wc -l) wheels from $wheels into $site"
  else
    "$py" -m pip install -q $missing  # (split into one name each on purpose)
  fi
fi
# the data: fails now, not after the benchmark, if it is missing
"$py" -c 'from gptlib.data import load_text; print(f"data: {len(load_text()):,} characters")'
mark setup "$t"

# --- the steps -----------------------------------------------------------------------------------
for step in "${steps[@]}"; do
  t=$SECONDS
  echo "== $step"
  case $step in
    bench)
      "$py" -m gptlib bench --device "$device" "${bench_extra[@]}" --json "$bench_json"
      cp "$bench_json" "$out/" 2> /dev/null || true  # (in a dry run it is already there)
      ;;
    lecture)
      "$py" -m gptlib train --preset "$preset" --device "$device" --out "$runs/lecture" --overwrite 2>&1 \
        | tee "$out/lecture.log"
      ;;
    chapter7)
      if (( dry )); then  # into a copy under $out, not in place; the ladder under runs/
        (cd book && GPTLIB_RESULTS=$runs "$py" -m jupyter execute 07_train_gpt.ipynb \
          --output="$out/07_train_gpt")
      else  # the notebook records its rung into the book's ladder (GPTLIB_RESULTS)
        (cd book && GPTLIB_RESULTS=book/results "$py" -m jupyter execute --inplace 07_train_gpt.ipynb)
        cp book/07_train_gpt.ipynb book/results/ladder.json "$out/"
      fi
      ;;
    compile)
      # evaluations at steps 100, 200 and 300: from the first to the last, 200 steps of each model;
      # before the first, the compilation too (evaluation runs the uncompiled model in both)
      for mode in no-compile compile; do
        "$py" -m gptlib train --preset "$preset" --device "$device" --out "$runs/$mode" --overwrite \
          --"$mode" --max-iters 300 --eval-interval 100 --eval-iters 10 --sample-tokens 0
      done
      RUNS=$runs "$py" - <<'EOF'
import os

from gptlib.checkpoint import load_checkpoint

runs = os.environ["RUNS"]
h = {mode: load_checkpoint(f"{runs}/{mode}/last.pt").extra["history"] for mode in ("no-compile", "compile")}
ms = {mode: 1000 * (x["elapsed"][-1] - x["elapsed"][0]) / (x["step"][-1] - x["step"][0]) for mode, x in h.items()}
overhead = h["compile"]["elapsed"][0] - h["no-compile"]["elapsed"][0] - 100 * (ms["compile"] - ms["no-compile"]) / 1000
saved = 5000 * (ms["no-compile"] - ms["compile"]) / 1000
print(f"torch.compile: {ms['compile']:.1f} ms/step vs {ms['no-compile']:.1f} without, after {overhead:.0f} s "
      f"of compiling: over the lecture preset's 5,000 steps it {'saves' if saved > overhead else 'costs'} "
      f"about {abs(saved - overhead):.0f} s")
EOF
      ;;
  esac
  mark "$step" "$t"
done
echo "== done in $(( SECONDS - started ))s: ${timings[*]}"

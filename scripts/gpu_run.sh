#!/usr/bin/env bash
# The book's GPU run: ONE call of at most 10 minutes on a bare GPU machine (CUDA torch installed; no
# Jupyter, no network). From the repository root:
#
#   bash scripts/gpu_run.sh                  # every step below, in order, within $GPU_RUN_BUDGET s
#   bash scripts/gpu_run.sh bench recipe     # only some steps (setup always runs)
#   bash scripts/gpu_run.sh --dry-run        # the same steps on the CPU with the smoke preset,
#                                            # writing only under runs/gpu_run_dry/ (a few minutes on
#                                            # a 2-core CPU): try the script there before spending GPU
#                                            # time on it
#
# What it needs beside the repository (ignored by git; on the lent machine, carried with the call):
#   .whl/                   the wheels of Jupyter's kernel, nbclient, nbval and ipywidgets
#                           (bash scripts/gpu_wheels.sh fetches them on a machine with pip)
#   data/tinyshakespeare.txt  the data (or GPTLIB_DATA pointing at a copy)
#   .nanogpt/model.py       nanoGPT's model.py (karpathy/nanoGPT, MIT), for the speed comparison;
#                           without it the speed step times gptlib alone
#
# Steps, in the order they run, each with a time cap (seconds), never past the budget (default 570 s:
# the lent machine's limit is 600 s a call). A step that runs out of time is stopped, marked in the
# README, and the next one runs. Chapter 7 comes first: the book commits it. Expected on an H200
# (estimates from the earlier run): setup 10-20 s, chapter7 ~80, bench ~45, speed ~130 (two
# compilations), recipe ~70; pytest gets the remaining ~4 minutes.
#   setup     (60)  install what is missing (the wheels, else pip), check the GPU and the data
#   chapter7  (170) re-executes book/07_train_gpt.ipynb in place on the GPU with the lecture preset,
#                   WITHOUT --allow-errors (a cell error fails the step), recording its rung in
#                   book/results/ladder.json (GPTLIB_RESULTS=book/results)
#   bench     (80)  python -m gptlib bench --device cuda --json book/results/bench_gpu.json
#                   (ms/step and MFU of the readable and the fast path; sampling)
#   speed     (180) scripts/gpu_speed.py: FastGPT against nanoGPT's model, eager and compiled (each
#                   compiles in its first round), and the training loop's own ms/step (median of 5
#                   alternating rounds of 30 steps; speed.json is rewritten after every round)
#   recipe    (110) scripts/gpu_recipe.py: chapter 7's lecture run scored on the whole val split, and
#                   a second candidate (3,000 steps) trained and scored alike
#   pytest    (what is left) pytest --nbval on the GPU: the unit tests and every notebook
#                   (smoke preset), under xdist with --dist loadscope (a notebook stays on one worker)
#
# The earlier run of this code on an H200 (2026-12-04): setup 8 s, bench 45 s, the lecture preset's
# 5,000 steps in 86 s; the lecture preset is now 2,000 steps, evaluated every 250.
#
# Results, all under $OUT (runs/gpu_run/ when OUT is not set), at most 8 files (what the lent
# machine hands back): README.md (what ran, each step's status and seconds), gpu_run.log (everything
# printed), 07_train_gpt.ipynb, bench_gpu.json, speed.json, recipes.json, pytest_gpu.txt, and
# book.tar.gz (every file the run changed under book/, to unpack at the repository root).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
py=${PYTHON:-python3}
wheels=${WHEELS:-$root/.whl}
budget=${GPU_RUN_BUDGET:-570}
dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
if (( dry )); then  # the smoke preset on the CPU; nothing under book/ is written
  device=cpu preset=smoke runs=runs/gpu_run_dry out=${OUT:-$root/runs/gpu_run_dry/out}
  bench_json=$out/bench_gpu.json bench_extra=(--preset smoke --rounds 1 --new-tokens 20)
  speed_extra=(--device cpu --preset smoke --steps 2 --rounds 1 --no-compile)
  recipe_extra=(--device cpu --preset smoke) candidate=steps30:max_iters=30
  pytest_args=(-q tests/test_gpu_levers.py)  # the plumbing only: the whole suite takes minutes here
  export GPTLIB_PRESET=smoke
else
  device=cuda preset=lecture runs=runs out=${OUT:-$root/runs/gpu_run}
  bench_json=book/results/bench_gpu.json bench_extra=()
  speed_extra=(--device cuda --steps 30 --rounds 5) recipe_extra=(--device cuda)
  candidate=steps3000:max_iters=3000
  workers=$(( $(nproc) > 12 ? 12 : $(nproc) ))
  pytest_args=(-q -n "$workers" --dist loadscope --nbval tests book)
  unset GPTLIB_PRESET  # the notebook picks its preset by device: lecture on a GPU
fi
all=(chapter7 bench speed recipe pytest)
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=("${all[@]}")
for step in "${steps[@]}"; do
  case " ${all[*]} " in *" $step "*) ;; *) echo "unknown step '$step' (steps: ${all[*]})" >&2; exit 2 ;; esac
done
mkdir -p "$out"
exec > >(tee -a "$out/gpu_run.log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" GPU_RUN_DEVICE=$device
[ -n "${GPTLIB_DATA:-}" ] || [ ! -f data/tinyshakespeare.txt ] || export GPTLIB_DATA=data/tinyshakespeare.txt

declare -A cap=([setup]=60 [chapter7]=170 [bench]=80 [speed]=180 [recipe]=110 [pytest]=600)
started=$SECONDS
report=()  # one line per step for the README
git_head="(not a git checkout)"
if git rev-parse --git-dir > /dev/null 2>&1; then
  git_head=$(git rev-parse --short HEAD)
  git diff --quiet HEAD -- gptlib scripts tests || git_head+=" with uncommitted changes to gptlib, scripts or tests"
fi

# run_step NAME CMD...: the command under its cap (never past the budget), its status recorded
run_step() {
  local name=$1 t=$SECONDS left limit status
  shift
  left=$(( budget - (SECONDS - started) ))
  limit=$(( cap[$name] < left ? cap[$name] : left ))
  echo "== $name (at most ${limit}s; $(date -u '+%H:%M:%S UTC'))"
  if (( limit < 10 )); then
    report+=("| $name | not run: the budget was spent | 0 |")
    return 1
  fi
  timeout --kill-after=10 "$limit" "$@"
  status=$?
  case $status in
    0) report+=("| $name | ok | $(( SECONDS - t )) |") ;;
    124|137) report+=("| $name | stopped at its time cap (${limit} s) | $(( SECONDS - t )) |") ;;
    *) report+=("| $name | FAILED (exit $status) | $(( SECONDS - t )) |") ;;
  esac
  return $status
}

write_readme() {
  {
    echo "# scripts/gpu_run.sh$( (( dry )) && echo ' --dry-run'), $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Commit $git_head; device $device, preset $preset, budget ${budget} s, ran $(( SECONDS - started )) s."
    echo "$("$py" -c 'import torch; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}" + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))' 2> /dev/null)"
    echo
    echo "| step | status | seconds |"
    echo "|---|---|---|"
    printf '%s\n' "${report[@]}"
    echo
    echo "| file | what it is |"
    echo "|---|---|"
    echo "| gpu_run.log | everything the steps printed |"
    echo "| 07_train_gpt.ipynb | chapter 7 executed in place (lecture preset on the GPU; a dry run: a smoke copy) |"
    echo "| bench_gpu.json | python -m gptlib bench --device $device (also written to book/results/ in a real run) |"
    echo "| speed.json | scripts/gpu_speed.py: FastGPT vs nanoGPT's model, eager and compiled, and the training loop |"
    echo "| recipes.json | scripts/gpu_recipe.py: chapter 7's run and the $candidate candidate, whole-split val |"
    echo "| pytest_gpu.txt | pytest ${pytest_args[*]} |"
    echo "| book.tar.gz | the files this run changed under book/ (unpack at the repository root) |"
  } > "$out/README.md"
}
trap write_readme EXIT

# --- setup ---------------------------------------------------------------------------------------
setup() {
  "$py" - <<'EOF' || return 1  # first the GPU: nothing is installed on a machine without one
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
plan = speed_plan(device)
print(f"speed plan on {device}: {describe_plan(plan)}" + (f" ({plan.why})" if plan.why else ""))
EOF
  if (( !dry )) && command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  fi
  local missing
  missing=$("$py" - <<'EOF'
import importlib.util
import os
need = {"tqdm": "tqdm", "numpy": "numpy", "matplotlib": "matplotlib", "ipywidgets": "ipywidgets",
        "nbclient": "nbclient", "nbformat": "nbformat", "ipykernel": "ipykernel", "jupyter_core": "jupyter-core",
        "nbval": "nbval"}
if os.environ["GPU_RUN_DEVICE"] == "cuda":
    need["xdist"] = "pytest-xdist"  # the GPU run's pytest uses several workers
print(" ".join(pkg for module, pkg in need.items() if importlib.util.find_spec(module) is None))
EOF
)
  if [ -n "$missing" ]; then
    echo "missing: $missing"
    if compgen -G "$wheels/*.whl" > /dev/null; then
      local site=${GPU_RUN_SITE:-/tmp/gptlib-site}
      "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        "$wheels"/*.whl || return 1
      export PYTHONPATH="$PYTHONPATH:$site" PATH="$site/bin:$PATH"
      echo "installed $(ls "$wheels"/*.whl | wc -l) wheels from $wheels into $site"
    else
      "$py" -m pip install -q $missing || return 1  # (split into one name each on purpose)
    fi
  fi
  # the data: fails now, not after the benchmark, if it is missing
  "$py" -c 'from gptlib.data import load_text; print(f"data: {len(load_text()):,} characters")'
}
echo "== setup ($(date -u '+%Y-%m-%d %H:%M UTC'), budget ${budget} s)"
t=$SECONDS
if ! setup; then
  report+=("| setup | FAILED | $(( SECONDS - t )) |")
  exit 1
fi
report+=("| setup | ok | $(( SECONDS - t )) |")

# --- the steps -----------------------------------------------------------------------------------
# each runs in its own bash under `timeout` (run_step), so they are exported below
chapter7() {
  if (( dry )); then  # into a copy under $out, not in place; the ladder under runs/
    (cd book && GPTLIB_RESULTS=$runs "$py" -m jupyter execute 07_train_gpt.ipynb --output="$out/07_train_gpt")
  else  # in place, failing on any cell error; the rung goes into the book's ladder
    (cd book && GPTLIB_RESULTS=book/results "$py" -m jupyter execute --inplace 07_train_gpt.ipynb) &&
      cp book/07_train_gpt.ipynb "$out/"
  fi
}
bench() {
  "$py" -m gptlib bench --device "$device" "${bench_extra[@]}" --json "$bench_json" &&
    { [ "$bench_json" = "$out/bench_gpu.json" ] || cp "$bench_json" "$out/"; }
}
speed() {
  "$py" scripts/gpu_speed.py --json "$out/speed.json" --nanogpt .nanogpt "${speed_extra[@]}"
}
recipe() {
  # chapter 7 keeps its checkpoints in runs/07_train_gpt_<preset> (a dry run's too)
  "$py" scripts/gpu_recipe.py --json "$out/recipes.json" --score "runs/07_train_gpt_$preset" \
    --train "$candidate" "${recipe_extra[@]}"
}
tests() {
  "$py" -m pytest "${pytest_args[@]}" -p no:cacheprovider 2>&1 | tee "$out/pytest_gpu.txt"
}
export -f chapter7 bench speed recipe tests
export dry py out runs device preset bench_json candidate
export BENCH_EXTRA="${bench_extra[*]}" SPEED_EXTRA="${speed_extra[*]}" RECIPE_EXTRA="${recipe_extra[*]}"
export PYTEST_ARGS="${pytest_args[*]}"
# (arrays cannot be exported: each step's bash reads its array back from these strings)
for step in "${steps[@]}"; do
  case $step in
    chapter7) run_step chapter7 bash -c 'chapter7' ;;
    bench) run_step bench bash -c 'bench_extra=($BENCH_EXTRA); bench' ;;
    speed) run_step speed bash -c 'speed_extra=($SPEED_EXTRA); speed' ;;
    recipe) run_step recipe bash -c 'recipe_extra=($RECIPE_EXTRA); recipe' ;;
    pytest) run_step pytest bash -c 'set -o pipefail; pytest_args=($PYTEST_ARGS); tests' ;;
  esac
done

# every file the run changed or made under book/ (the chapter, the ladder, the bench), in one archive
changed=$(git status --porcelain -- book 2> /dev/null | cut -c4-)
if [ -z "$changed" ] && ! git rev-parse --git-dir > /dev/null 2>&1; then  # a copy without git: what it writes
  changed=$(ls book/07_train_gpt.ipynb book/results/ladder.json book/results/bench_gpu.json 2> /dev/null)
fi
if (( !dry )) && [ -n "$changed" ]; then
  tar -czf "$out/book.tar.gz" $changed && echo "book.tar.gz: $(echo $changed | wc -w) file(s): $changed"
fi
echo "== done in $(( SECONDS - started ))s"
printf '%s\n' "${report[@]}"

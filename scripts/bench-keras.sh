#!/usr/bin/env bash
# The lecture's matrix side by side: the notebook's four variants in Keras (TensorFlow, CPU) and
# the same matrix through `runner sweep` without caches, from cold caches and on warm caches, on
# one generated JPEG data set and one VGG16 conv-base weights file. Prints one markdown table
# (wall and CPU seconds per variant and in total, and the ratios Keras / runner) with the machine
# and the versions, and writes it to target/bench-keras/table.md and table.csv.
#
#   scripts/bench-keras.sh                  # 4 variants x 1 seed x 3 epochs, 96 + 48 JPEGs, 150x150
#   scripts/bench-keras.sh --seeds 3 --epochs 10   # the lecture's full matrix
#   scripts/bench-keras.sh --quick          # 16 + 8 JPEGs, 1 epoch, 1 seed: checks the script
#
# Flags: --epochs N, --seeds N, --train-images N, --validation-images N, --quick, --skip-keras,
# --skip-runner, --runner BINARY (default: `cargo build --release`, then target/release/runner),
# --keep-results (keep runner's results directories; default: deleted at the end).
#
# Needs python3 with venv and pip, and PyPI: tensorflow-cpu is installed once into
# target/bench-venv (pinned below) and reused. No other network: Keras cannot download the
# ImageNet weights, so Keras writes a full-size VGG16 conv base with random, seeded weights once
# (target/bench-keras/vgg16-random-notop.h5, Keras's HDF5 layout) and both sides load that file:
# they compute the same network. The data set (target/bench-keras/data-<train>-<validation>/)
# is generated once, by scripts/bench-keras/data.py, and reused. Any error stops the script with
# a message; nothing is timed from a failed run.
set -euo pipefail
cd "$(dirname "$0")/.."
trap 'echo "bench-keras: failed (line $LINENO): see the messages above" >&2' ERR

TF_PIN=tensorflow-cpu==2.21.0
command_line="scripts/bench-keras.sh${*:+ $*}"
epochs=3 seeds=1 train=96 validation=48 size=150
skip_keras=0 skip_runner=0 runner="" keep=0
need() {
  if [ $# -lt 2 ] || ! [[ $2 =~ ^[0-9]+$ ]] || [ "$2" -lt 1 ]; then
    echo "bench-keras: $1 needs a positive whole number" >&2
    exit 2
  fi
}
while [ $# -gt 0 ]; do
  case $1 in
    --epochs) need "$@"; epochs=$2; shift 2 ;;
    --seeds) need "$@"; seeds=$2; shift 2 ;;
    --train-images) need "$@"; train=$2; shift 2 ;;
    --validation-images) need "$@"; validation=$2; shift 2 ;;
    --quick) epochs=1 seeds=1 train=16 validation=8; shift ;;
    --skip-keras) skip_keras=1; shift ;;
    --skip-runner) skip_runner=1; shift ;;
    --runner) [ $# -ge 2 ] || { echo "bench-keras: --runner needs a path" >&2; exit 2; }; runner=$2; shift 2 ;;
    --keep-results) keep=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-keras: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$train" -lt 2 ] || [ "$validation" -lt 2 ]; then
  echo "bench-keras: --train-images and --validation-images need at least 2 (one per class)" >&2; exit 2
fi

work=target/bench-keras
mkdir -p "$work"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# 1. Python: tensorflow-cpu in its own virtual environment, created once.
venv=target/bench-venv
if [ ! -f "$venv/.complete" ] || [ "$(cat "$venv/.complete")" != "$TF_PIN" ]; then
  command -v python3 >/dev/null || { echo "bench-keras: python3 is not installed" >&2; exit 2; }
  echo "bench-keras: installing $TF_PIN into $venv (once)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" || { echo "bench-keras: python3 cannot create a virtual environment (Debian: apt-get install python3-venv)" >&2; exit 2; }
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet "$TF_PIN" >&2 || { echo "bench-keras: pip could not install $TF_PIN (no package index reachable?)" >&2; exit 3; }
  printf '%s' "$TF_PIN" >"$venv/.complete"
fi
py=$venv/bin/python
helpers=scripts/bench-keras

# 2. The runner binary.
if [ "$skip_runner" = 0 ]; then
  if [ -z "$runner" ]; then
    cargo build --release
    runner=target/release/runner
  fi
  [ -x "$runner" ] || { echo "bench-keras: $runner is not an executable runner binary" >&2; exit 2; }
  runner=$(cd "$(dirname "$runner")" && pwd)/$(basename "$runner")
  runner_version=$("$runner" --version) || { echo "bench-keras: \`$runner --version\` failed: not a runner binary?" >&2; exit 2; }
fi

# 3. The data set and the weights, shared by both sides (generated once, outside the timing).
data=$work/data-$train-$validation
weights=$work/vgg16-random-notop.h5
"$py" "$helpers/data.py" "$data" --train "$train" --validation "$validation"
"$py" "$helpers/weights.py" "$weights" --size "$size"
echo "Both sides load $weights: a random, seeded VGG16 conv base written by Keras (no download), the same network on both."

# 4. Keras: the notebook's four variants.
rm -f "$work/keras.json" "$work/runner.json" "$work/table.md" "$work/table.csv"
if [ "$skip_keras" = 0 ]; then
  echo "bench-keras: Keras, log in $work/keras.log" >&2
  "$py" "$helpers/notebook.py" --train "$data/train" --validation "$data/validation" \
    --weights "$weights" --epochs "$epochs" --seeds "$seeds" --size "$size" \
    --json "$work/keras.json" >"$work/keras.log" 2>&1 || {
    tail -n 40 "$work/keras.log" >&2
    echo "bench-keras: the Keras notebook failed; its log: $work/keras.log" >&2
    exit 1
  }
fi

# 5. runner: the same matrix from an experiment file written here.
if [ "$skip_runner" = 0 ]; then
  seed_list=$(seq -s ', ' 0 $((seeds - 1)))
  augmentation='dataset.augmentation = [
    { type = "flip", mode = "horizontal" },
    { type = "rotation", factor = 0.1 },
    { type = "zoom", height_factor = 0.1 },
]'
  cat >"$work/bench_keras.toml.tmp" <<EOF
# Written by scripts/bench-keras.sh: the lecture's matrix on the benchmark's data and weights.
name = "bench_keras"
seeds = [$seed_list]

[dataset]
train_dir = "$(basename "$data")/train"
validation_dir = "$(basename "$data")/validation"
image_size = [$size, $size]
batch_size = 32
preprocessing = "rescale"

[model]
architecture = "vgg16"
weights = { file = "$(basename "$weights")" }
head = { units = [256] }

[training]
epochs = $epochs
optimizer = "adam"
learning_rate = 1e-3

[[variants]]
name = "feature_extraction"
training.freeze = ["block*"]

[[variants]]
name = "feature_extraction_aug"
training.freeze = ["block*"]
$augmentation

[[variants]]
name = "fine_tuning"
training.trainable_from = "block5_conv1"

[[variants]]
name = "fine_tuning_aug"
training.trainable_from = "block5_conv1"
$augmentation
EOF
  mv "$work/bench_keras.toml.tmp" "$work/bench_keras.toml"
  echo "bench-keras: runner, logs in $work/logs/" >&2
  python3 "$helpers/runner_side.py" --runner "$runner" --experiment "$work/bench_keras.toml" \
    --name bench_keras --work "$work" --json "$work/runner.json" --device cpu
  [ "$keep" = 1 ] || rm -rf "$work/results-no-cache" "$work/results-cached"
fi

# 6. The table.
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo no-git)
[ -z "$(git status --porcelain 2>/dev/null)" ] || commit="$commit (with local changes)"
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  gpu="A GPU is present ($(nvidia-smi -L | head -n 1)), but this script measures the CPU only: the GPU comparison (Keras with tensorflow[and-cuda] against runner --device cuda, scripts/build-cuda.sh) was not measured."
else
  gpu="No GPU here (nvidia-smi): the GPU comparison was not measured."
fi
notes=(
  --note "Command: \`$command_line\`."
  --note "Matrix: 4 variants x $seeds seed(s) x $epochs epoch(s), $train training + $validation validation JPEGs ($data), ${size}x$size, batch 32; both sides load $weights (random VGG16 conv base written by Keras, seeded)."
  --note "runner: ${runner_version:-not run} (${runner:-none}), work tree $commit; one \`runner sweep --variant V... --device cpu --no-report\` process per row, in the rows' order (the augmented pair in one process, in lockstep) (no-cache: --no-cache, fresh results; cold: fresh results; warm: the same results again with --force); totals are their sums."
  --note "Load average (1, 5, 15 min) before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg)."
  --note "$gpu"
)
args=(--out-dir "$work" "${notes[@]}")
[ -f "$work/keras.json" ] && args+=(--keras "$work/keras.json")
[ -f "$work/runner.json" ] && args+=(--runner "$work/runner.json")
echo
python3 "$helpers/table.py" "${args[@]}"
echo
echo "Written: $work/table.md, $work/table.csv"

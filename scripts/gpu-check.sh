#!/usr/bin/env bash
# Check and time the CUDA build on a machine with an NVIDIA GPU, in one run of a few minutes.
#
#   scripts/build-cuda.sh                  # on the build machine: target/cuda/dist/{runner,unit-tests}
#   scripts/gpu-check.sh [DIST] [OUT]      # on the GPU machine, from the repository root
#
# DIST (default target/cuda/dist) holds the binaries build-cuda.sh made, or is absent and
# target/cuda/dist.tar.xz (the same binaries, compressed to carry) is unpacked into it; OUT (default
# gpu-check-out, or $OUT when set) receives the logs and gpu-check.md, the summary table.
# The binaries load the CUDA 13 libraries at run time: they are taken from the Python
# environment that has PyTorch (+cu130), or from CUDA_LIBS if set (colon-separated).
#
# Steps: the device-variant unit tests (CPU vs CUDA on small networks), `runner device --check`
# (VGG16 at 150x150: conv base, logits, one fine-tuning step, relative differences), then timings:
# `runner bench` on the GPU and a lecture-shaped sweep (VGG16 widths, 150x150 generated images,
# 512 training / 128 validation, 4 variants x 2 seeds x 3 epochs) with `--device cuda`.
set -uo pipefail
cd "$(dirname "$0")/.."
dist=${1:-target/cuda/dist}
out=${2:-${OUT:-gpu-check-out}}
mkdir -p "$out"
summary=$out/gpu-check.md
runner=$dist/runner
tests=$dist/unit-tests
if [[ ! -x $runner && -f target/cuda/dist.tar.xz ]]; then
    mkdir -p "$dist"
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' target/cuda/dist.tar.xz "$dist"
fi
[[ -x $runner ]] || { echo "gpu-check: no $runner; run scripts/build-cuda.sh first" >&2; exit 1; }

if [[ -z ${CUDA_LIBS:-} ]]; then
    site=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null ||
        ls -d /opt/torch/.venv/lib/python3*/site-packages 2>/dev/null | head -n1)
    CUDA_LIBS=$site/nvidia/cu13/lib:$site/nvidia/cudnn/lib
fi
export LD_LIBRARY_PATH=$CUDA_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export RUST_BACKTRACE=1

status=0
step() { # step NAME COMMAND...: run (at most $STEP_TIMEOUT s), log to $out/NAME.log, echo the tail, remember failures
    local name=$1
    shift
    echo "== $name: $*"
    local t0=$SECONDS
    timeout "${STEP_TIMEOUT:-300}" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$out/$name.log"
    echo "== $name: exit $rc, $((SECONDS - t0)) s"
    [[ $rc == 0 ]] || status=1
    return $rc
}

{
    echo "# GPU check"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "- gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo unknown)"
    echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
    echo "- libraries: $CUDA_LIBS"
} >"$summary"

step device "$runner" device --device cuda
sed 's/^/    /' "$out/device.log" >>"$summary"

if [[ -x $tests ]]; then
    # Every unit test with a CUDA variant has "cuda" in its name.
    step unit-tests "$tests" cuda --test-threads 1 --nocapture
    { echo; echo "## Device-variant unit tests"; echo; grep -E '^test |test result' "$out/unit-tests.log" | sed 's/^/    /'; } >>"$summary"
fi

step device-check "$runner" device --device cuda --check --image-size 150 --batch 4
{ echo; echo "## CUDA vs CPU, VGG16 at 150x150, batch 4"; echo; sed 's/^/    /' "$out/device-check.log"; } >>"$summary"

if "$runner" bench --help >/dev/null 2>&1; then
    step bench "$runner" bench --device cuda --csv "$out/bench.csv"
    { echo; echo "## runner bench --device cuda"; echo; sed 's/^/    /' "$out/bench.log"; } >>"$summary"
fi

# A lecture-shaped sweep on generated data: the notebook's network and image size, fewer images.
work=$(mktemp -d)
cat >"$work/lecture-shaped.toml" <<'EOF'
name = "lecture-shaped"
seeds = [0, 1]
device = "cuda"

[dataset]
image_size = [150, 150]
batch_size = 20

[dataset.synthetic]
seed = 0
train_per_class = 256
validation_per_class = 64
size = 150

[model]
weights = "none"
conv_init = "he_uniform"

[training]
epochs = 3
optimizer = "rmsprop"
learning_rate = 2e-5

[[variants]]
name = "feature_extraction"
training.freeze = ["block*"]

[[variants]]
name = "feature_extraction_aug"
training.freeze = ["block*"]
dataset.augmentation = [{ type = "flip", mode = "horizontal" }, { type = "rotation", factor = 0.1 }, { type = "zoom", height_factor = 0.2 }]

[[variants]]
name = "fine_tuning"
training.trainable_from = "block5_conv1"

[[variants]]
name = "fine_tuning_aug"
training.trainable_from = "block5_conv1"
dataset.augmentation = [{ type = "flip", mode = "horizontal" }, { type = "rotation", factor = 0.1 }, { type = "zoom", height_factor = 0.2 }]
EOF
t0=$(date +%s.%N)
step sweep "$runner" sweep "$work/lecture-shaped.toml" --results "$work/results" --no-report
t1=$(date +%s.%N)
{
    echo
    echo "## Lecture-shaped sweep on CUDA (VGG16, 150x150, 512 train / 128 validation, 4 variants x 2 seeds x 3 epochs)"
    echo
    python3 - "$t0" "$t1" <<'PY'
import sys
t0, t1 = map(float, sys.argv[1:3])
images = 4 * 2 * 3 * (512 + 128)
print(f"    wall {t1 - t0:.1f} s (data generation and hashing included), {images / (t1 - t0):.0f} images/s end to end")
PY
    tail -n 12 "$out/sweep.log" | sed 's/^/    /' 
} >>"$summary"
rm -rf "$work"

echo
cat "$summary"
exit $status

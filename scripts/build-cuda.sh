#!/usr/bin/env bash
# Build `runner` with CUDA support (`--features cuda`) on a machine without a GPU or a system CUDA
# install. The CUDA toolchain comes from pinned PyPI wheels, so the build is the same everywhere.
#
#   scripts/build-cuda.sh                 # -> target/cuda/dist/{runner,unit-tests}, target/cuda/dist.tar.xz
#   FEATURES=cudnn scripts/build-cuda.sh  # also cuDNN convolutions
#
# Everything it fetches or builds stays under target/ (ignored by git): the wheels' virtualenv in
# target/cuda-toolchain, the build in target/cuda. A clean build compiles all of candle-kernels with
# nvcc (about 20 minutes on 2 cores); later builds reuse it.
#
# Running the binary needs the NVIDIA driver (libcuda.so.1) and the same CUDA 13 libraries at load
# time; on a machine with PyTorch 2.11+cu130 they are in its site-packages:
#   export LD_LIBRARY_PATH=$SITE/nvidia/cu13/lib:$SITE/nvidia/cudnn/lib
# scripts/gpu-check.sh does this for the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
toolchain=${CUDA_TOOLCHAIN_DIR:-$root/target/cuda-toolchain}
features=${FEATURES:-cuda}
# The build (and its nvcc-compiled kernels, the slow part) lives here; point several checkouts at
# one directory to share it.
target=${CUDA_TARGET_DIR:-$root/target/cuda}
# Compute capability of the GPU the kernels are built for (9.0: H100/H200). Setting it means the
# build never calls nvidia-smi, so it works on machines without a GPU.
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}

# Pinned to match PyTorch 2.11 (+cu130). nvvm must be the same release as nvcc: a newer nvvm writes
# PTX that nvcc 13.0's ptxas rejects. cccl provides the headers cuda_fp16.h needs.
wheels=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-cuda-cccl==13.0.85
    nvidia-cuda-runtime==13.0.96
    nvidia-cuda-nvrtc==13.0.88
    nvidia-cublas==13.1.0.3
    'cuda-toolkit[curand]==13.0.2'
    nvidia-cudnn-cu13==9.19.0.56
)
stamp="$toolchain/.installed"
want=$(printf '%s\n' "${wheels[@]}")
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "build-cuda: installing the CUDA toolchain wheels into $toolchain"
    rm -rf "$toolchain"
    python3 -m venv "$toolchain/venv"
    "$toolchain/venv/bin/pip" install --quiet --disable-pip-version-check "${wheels[@]}"
    printf '%s\n' "$want" >"$stamp"
fi

site=$("$toolchain/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cuda=$site/nvidia/cu13
cudnn=$site/nvidia/cudnn
[[ -x $cuda/bin/nvcc ]] || { echo "build-cuda: nvcc missing from $cuda/bin; delete $toolchain and rerun" >&2; exit 1; }

# The wheels ship only versioned shared objects (libcublas.so.13); the linker wants libcublas.so.
for lib in "$cuda"/lib/*.so.* "$cudnn"/lib/*.so.*; do
    base=${lib##*/}
    link="$cuda/lib/${base%%.so.*}.so"
    [[ -e $link ]] || ln -s "$lib" "$link"
done

# No wheel ships libcuda (it comes with the driver). Link against a stub that defines every driver
# entry point cudarc declares, with the driver's SONAME, so the binary loads the real
# libcuda.so.1 at run time. cudarc's search path includes $CUDA_ROOT/lib/stubs.
cudarc_src=$(cargo metadata --format-version 1 --features "$features" 2>/dev/null |
    python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc").rsplit("/",1)[0])')
stub_dir=$cuda/lib/stubs
if [[ ! -f $stub_dir/libcuda.so ]]; then
    mkdir -p "$stub_dir"
    grep -oE '^\s+fn cu[A-Za-z0-9_]+\(' "$cudarc_src/src/driver/sys/mod.rs" | sed -E 's/^\s+fn (cu[A-Za-z0-9_]+)\(/\1/' |
        sort -u | sed -E 's/.*/void &(void) {}/' >"$stub_dir/libcuda-stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub_dir/libcuda.so" "$stub_dir/libcuda-stub.c"
    echo "build-cuda: libcuda stub with $(wc -l <"$stub_dir/libcuda-stub.c") driver functions"
fi

export PATH=$cuda/bin:$PATH
export CUDA_ROOT=$cuda CUDA_PATH=$cuda CUDA_HOME=$cuda CUDNN_PATH=$cudnn
export CUDARC_CUDA_VERSION=13000
export CPATH=$cudnn/include${CPATH:+:$CPATH}
nvcc --version | tail -n 2

cargo build --release --features "$features" --target-dir "$target" --bin runner
# The library's unit tests too: the ones with a CUDA variant run on the GPU machine
# (scripts/gpu-check.sh), which has no Rust toolchain.
tests=$(cargo test --release --features "$features" --target-dir "$target" --lib --no-run \
    --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["lib"]:
        print(m["executable"])' | tail -n1)
[[ -n $tests ]] || { echo "build-cuda: building the unit tests failed" >&2; exit 1; }

# Stripped copies, small enough to carry to a GPU machine.
dist=$target/dist
mkdir -p "$dist"
strip -o "$dist/runner" "$target/release/runner"
strip -o "$dist/unit-tests" "$tests"
# One archive of both (PTX compresses well: ~115 MB -> ~18 MB) to copy to the GPU machine.
tar -C "$dist" -cf - runner unit-tests | xz -6 -T0 >"$target/dist.tar.xz.tmp"
mv "$target/dist.tar.xz.tmp" "$target/dist.tar.xz"
echo "build-cuda: $dist/runner ($(du -h "$dist/runner" | cut -f1)) and $dist/unit-tests ($(du -h "$dist/unit-tests" | cut -f1)), features: $features"

"""Writes the conv base both sides load: Keras's VGG16(include_top=False, weights=None) at the
benchmark's input size, initialised with a fixed seed (no network, so no ImageNet weights), saved
by Keras 3's legacy HDF5 writer (`layer_names` / `weight_names`, as `runner` reads .h5 files and
as VGG16(weights=PATH) loads them). Full size: 14,714,688 parameters, as the ImageNet file.

    python weights.py OUT.h5 --size 150 [--seed S]

Written to a temporary name and renamed; an existing OUT is kept as it is.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--size", type=int, default=150)
    p.add_argument("--seed", type=int, default=1234)
    a = p.parse_args()
    if os.path.isfile(a.out):
        print(f"weights: {a.out} (kept)")
        return
    import h5py
    import keras
    from keras.applications.vgg16 import VGG16
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(a.seed)
    base = VGG16(include_top=False, weights=None, input_shape=(a.size, a.size, 3))
    params = base.count_params()
    if params != 14_714_688:
        raise SystemExit(f"weights.py: VGG16 conv base has {params} parameters, expected 14714688")
    tmp = a.out + ".tmp"
    with h5py.File(tmp, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, base)
    os.replace(tmp, a.out)
    print(f"weights: {a.out} (VGG16 conv base, random, seed {a.seed}, {params} parameters, written)")


if __name__ == "__main__":
    main()

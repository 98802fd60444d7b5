"""Reference fixture for reading VGG16 conv-base weights in every supported format.

Builds a reduced-width VGG16 (the layer names and structure of keras.applications.VGG16 with
include_top=False: 13 3x3 "same" ReLU convolutions in blocks of 2, 2, 3, 3, 3, each block ending
in a 2x2 max pooling) with channels [2, 4, 4, 4, 8] instead of [64, 128, 256, 512, 512], on a
64x80 input, gives it random non-zero weights, and writes next to this script:

  vgg_keras3.h5                   the weights as Keras 3's legacy HDF5 writer saves them
                                  (legacy_h5_format.save_weights_to_hdf5_group: `layer_names`,
                                  `weight_names` = "block1_conv1/kernel", ...; HWIO kernels)
  vgg_keras_notop.h5              the same weights laid out like the ImageNet file Keras downloads,
                                  vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 (flat dataset
                                  names "block1_conv1_W_1:0" / "_b_1:0"), written with h5py; checked
                                  here by loading it with Keras's own loader
  vgg_torchvision.pth             torch.save(model.state_dict()) of a torchvision-style VGG
                                  (`features.N.weight` OIHW, plus a small `classifier`), zip format
  vgg_torchvision_legacy.pth      the same with _use_new_zipfile_serialization=False: the pre-1.6
                                  format of torchvision's 2017 vgg16-397923af.pth
  vgg_timm.safetensors            `features.N` tensors plus timm-style head tensors
                                  (pre_logits.fc1, head.fc) that the runner must ignore
  vgg_io.safetensors              "image": uint8 (1, 64, 80, 3) RGB; "expected": float32
                                  (1, 2, 2, 8), the output of block5_pool for image / 255, computed
                                  by Keras (TensorFlow backend, float32) and checked against PyTorch

The Rust test (src/model/weights/reference_tests.rs) loads each weights file, runs the conv base
on image / 255 and compares with "expected" within 1e-4 relative.

Produced with: Python 3.11, TensorFlow 2.21.0 (tensorflow-cpu), Keras 3.15.1, torch 2.15.0,
h5py 3.14.0, safetensors 0.8.0, numpy 2.4.
Rerun from the repository root: /work/venv-ref/bin/python tests/reference/vgg_fixture.py
(any venv with those packages; the output is deterministic for a given seed and versions).
"""

import os
from collections import OrderedDict
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from keras.src.legacy.saving import legacy_h5_format  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

OUT = Path(__file__).resolve().parent
CHANNELS = [2, 4, 4, 4, 8]
BLOCKS = [2, 2, 3, 3, 3]
H, W = 64, 80
SEED = 20240611


def conv_names():
    return [f"block{b + 1}_conv{i + 1}" for b, n in enumerate(BLOCKS) for i in range(n)]


def keras_model():
    x = inputs = keras.Input((H, W, 3), name="input_layer")
    for b, (n, ch) in enumerate(zip(BLOCKS, CHANNELS)):
        for i in range(n):
            x = keras.layers.Conv2D(
                ch, (3, 3), activation="relu", padding="same", name=f"block{b + 1}_conv{i + 1}"
            )(x)
        x = keras.layers.MaxPooling2D((2, 2), strides=(2, 2), name=f"block{b + 1}_pool")(x)
    return keras.Model(inputs, x, name="vgg16")


def random_weights(rng):
    """HWIO kernels with He-normal scale (so activations neither vanish nor explode through 13
    ReLU layers) and non-zero biases."""
    weights = OrderedDict()
    cin = 3
    for b, (n, ch) in enumerate(zip(BLOCKS, CHANNELS)):
        for i in range(n):
            name = f"block{b + 1}_conv{i + 1}"
            k = rng.normal(0.0, np.sqrt(2.0 / (9 * cin)), size=(3, 3, cin, ch)).astype(np.float32)
            bias = rng.uniform(-0.1, 0.1, size=(ch,)).astype(np.float32)
            weights[name] = (k, bias)
            cin = ch
    return weights


class TorchVGG(torch.nn.Module):
    """torchvision.models.vgg.VGG's `features` (make_layers, cfg "D", no batch norm) and a small
    `classifier` with torchvision's indices 0, 3, 6."""

    def __init__(self):
        super().__init__()
        layers, cin = [], 3
        for n, ch in zip(BLOCKS, CHANNELS):
            for _ in range(n):
                layers += [torch.nn.Conv2d(cin, ch, 3, padding=1), torch.nn.ReLU(inplace=True)]
                cin = ch
            layers.append(torch.nn.MaxPool2d(2, 2))
        self.features = torch.nn.Sequential(*layers)
        feats = CHANNELS[-1] * (H // 32) * (W // 32)
        self.classifier = torch.nn.Sequential(
            torch.nn.Linear(feats, 4),
            torch.nn.ReLU(True),
            torch.nn.Dropout(),
            torch.nn.Linear(4, 4),
            torch.nn.ReLU(True),
            torch.nn.Dropout(),
            torch.nn.Linear(4, 3),
        )


def torchvision_indices():
    """Keras conv name -> index in `features`: each conv is followed by a ReLU, each block by a pool."""
    out, idx = {}, 0
    for b, n in enumerate(BLOCKS):
        for i in range(n):
            out[f"block{b + 1}_conv{i + 1}"] = idx
            idx += 2
        idx += 1
    return out


def write_notop_style_h5(path, weights, model):
    """The layout of vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5: root `layer_names` (all
    layers, the input included), one group per layer with `weight_names` and flat datasets."""
    names = [layer.name for layer in model.layers]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        f.attrs["backend"] = b"tensorflow"
        for n in names:
            g = f.create_group(n)
            if n in weights:
                k, bias = weights[n]
                wn = [f"{n}_W_1:0".encode(), f"{n}_b_1:0".encode()]
                g.attrs["weight_names"] = np.array(wn)
                g.create_dataset(wn[0].decode(), data=k)
                g.create_dataset(wn[1].decode(), data=bias)
            else:
                g.attrs["weight_names"] = np.array([], dtype="S1")


def main():
    rng = np.random.default_rng(SEED)
    weights = random_weights(rng)
    image = rng.integers(0, 256, size=(1, H, W, 3), dtype=np.uint8)
    x = image.astype(np.float32) / np.float32(255.0)

    model = keras_model()
    for name, (k, bias) in weights.items():
        model.get_layer(name).set_weights([k, bias])
    expected = np.asarray(model(x, training=False), dtype=np.float32)
    assert expected.shape == (1, 2, 2, CHANNELS[-1]), expected.shape
    nonzero = np.count_nonzero(expected) / expected.size
    assert nonzero > 0.5, f"too many dead outputs ({nonzero:.2f} non-zero): pick another seed"

    # Keras 3's own legacy HDF5 writer.
    with h5py.File(OUT / "vgg_keras3.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)

    # The ImageNet file's layout; Keras's loader must read it back to the same output.
    write_notop_style_h5(OUT / "vgg_keras_notop.h5", weights, model)
    check = keras_model()
    with h5py.File(OUT / "vgg_keras_notop.h5", "r") as f:
        legacy_h5_format.load_weights_from_hdf5_group(f, check)
    np.testing.assert_array_equal(np.asarray(check(x, training=False)), expected)

    # PyTorch: HWIO -> OIHW (keras-notebook-semantics.md 8.3), same output within float error.
    tv = TorchVGG().eval()
    idx = torchvision_indices()
    with torch.no_grad():
        for name, (k, bias) in weights.items():
            conv = tv.features[idx[name]]
            conv.weight.copy_(torch.from_numpy(k.transpose(3, 2, 0, 1).copy()))
            conv.bias.copy_(torch.from_numpy(bias))
        out = tv.features(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    state = tv.state_dict()
    torch.save(state, OUT / "vgg_torchvision.pth")
    torch.save(state, OUT / "vgg_torchvision_legacy.pth", _use_new_zipfile_serialization=False)

    timm = OrderedDict((k, v.numpy().copy()) for k, v in state.items() if k.startswith("features."))
    timm["pre_logits.fc1.weight"] = rng.normal(size=(4, CHANNELS[-1], 1, 1)).astype(np.float32)
    timm["pre_logits.fc1.bias"] = np.zeros(4, np.float32) + 0.5
    timm["head.fc.weight"] = rng.normal(size=(3, 4)).astype(np.float32)
    timm["head.fc.bias"] = np.ones(3, np.float32)
    save_file(dict(timm), OUT / "vgg_timm.safetensors")

    save_file({"image": image, "expected": expected}, OUT / "vgg_io.safetensors")
    for p in sorted(OUT.glob("vgg_*")):
        if p.suffix != ".py":
            print(f"{p.name}: {p.stat().st_size} bytes")
    print("expected[0, :, :, 0] =", expected[0, :, :, 0].tolist())


if __name__ == "__main__":
    main()

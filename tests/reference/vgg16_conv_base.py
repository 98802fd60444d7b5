"""Reference output for src/model/conv (tests `conv_base_matches_the_float64_reference`): the
full-width VGG16 conv base (13 3x3 same convolutions + bias + ReLU, 5 2x2 max pools; channels
64-128-256-512-512) at 150x150 on one image, computed by a direct convolution in float64.

Weights, biases and the image come from an integer hash that Rust reproduces exactly
(`conv::tests::reference_value`), so no weights file is needed:
    h(x) = lowbias32(x): x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b;
           x ^= x >> 16 (all modulo 2**32)
    value(stream, i, e) = ((h(stream * 2**22 + i) % 2001) - 1000) / 1024 * 2**-e
exact in float32. Stream 0 is the image (C, H, W order, e = -6: values within +-62.5); layer l
(0..12) takes stream 1 + 2l for its kernel (O, I, 3, 3 order, e from SCALE) and 2 + 2l for
its bias (e = 6).

Stores block5_pool (512 x 4 x 4, C, H, W order) as float32 little-endian, base64.
    python tests/reference/vgg16_conv_base.py > tests/reference/vgg16_conv_base.json
"""
import base64
import json

import numpy as np

CHANNELS = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
# 2**-e bounds each layer's kernel values, by input channels: about He's scale.
SCALE = {3: 1, 64: 3, 128: 4, 256: 4, 512: 5}
SIZE = 150


def lowbias32(x):
    x = x.astype(np.uint64)
    m = np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & m
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & m
    x ^= x >> np.uint64(16)
    return x


def values(stream, n, e):
    h = lowbias32(np.uint64(stream) * np.uint64(1 << 22) + np.arange(n, dtype=np.uint64))
    k = (h % np.uint64(2001)).astype(np.int64) - 1000
    return (k.astype(np.float64) / 1024.0) * 2.0 ** (-e)


def conv3x3_relu(x, w, b):
    c, h, wd = x.shape
    p = np.zeros((c, h + 2, wd + 2))
    p[:, 1:-1, 1:-1] = x
    out = np.zeros((w.shape[0], h * wd))
    for ky in range(3):
        for kx in range(3):
            out += w[:, :, ky, kx] @ p[:, ky:ky + h, kx:kx + wd].reshape(c, h * wd)
    out += b[:, None]
    return np.maximum(out, 0.0).reshape(w.shape[0], h, wd)


def pool(x):
    c, h, w = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(c, h // 2, 2, w // 2, 2).max(axis=(2, 4))


x = values(0, 3 * SIZE * SIZE, -6).reshape(3, SIZE, SIZE)
cin, layer = 3, 0
for item in CHANNELS:
    if item == "M":
        x = pool(x)
        continue
    w = values(1 + 2 * layer, item * cin * 9, SCALE[cin]).reshape(item, cin, 3, 3)
    b = values(2 + 2 * layer, item, 6)
    x = conv3x3_relu(x, w, b)
    cin, layer = item, layer + 1

out = x.astype("<f4")
print(json.dumps(dict(
    generator="tests/reference/vgg16_conv_base.py", numpy=np.__version__, dtype="float64",
    image_size=SIZE, shape=list(out.shape), max_abs=float(np.abs(x).max()),
    block5_pool_f32_base64=base64.b64encode(out.tobytes()).decode()), indent=1))

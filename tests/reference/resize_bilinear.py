"""Reference values for `dataset::decode::resize_bilinear` (see src/dataset/decode.rs).

Produced with Python 3.11, TensorFlow 2.21, Keras 3.15.1, numpy. Rerun from the repository root:

    python tests/reference/resize_bilinear.py > tests/reference/resize_bilinear.json

Each case resizes a small uint8 RGB image (a fixed pseudo-random pattern, stored in the JSON so the
Rust test needs no Python) with `tf.image.resize(method="bilinear", antialias=False)`, which is what
`keras.utils.image_dataset_from_directory` does.
"""

import json
import sys

import numpy as np
import tensorflow as tf

CASES = [
    # (in_h, in_w, out_h, out_w)
    (5, 7, 3, 4),  # downscale, non-square
    (4, 4, 9, 6),  # upscale, non-square output
    (3, 5, 7, 2),  # upscale one axis, downscale the other
    (1, 1, 2, 3),  # single pixel
    (6, 4, 6, 4),  # same size: a plain cast
    (10, 3, 4, 3),  # one axis unchanged
]


def main():
    cases = []
    for k, (ih, iw, oh, ow) in enumerate(CASES):
        rng = np.random.RandomState(1000 + k)
        src = rng.randint(0, 256, size=(ih, iw, 3)).astype(np.uint8)
        out = tf.image.resize(src, (oh, ow), method="bilinear", antialias=False).numpy()
        assert out.dtype == np.float32
        cases.append(
            {
                "input_shape": [ih, iw],
                "output_shape": [oh, ow],
                "input": src.reshape(-1).tolist(),
                "output": [float(v) for v in out.reshape(-1)],
            }
        )
    json.dump({"tensorflow": tf.__version__, "cases": cases}, sys.stdout)
    print()


if __name__ == "__main__":
    main()

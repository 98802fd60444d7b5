"""How TensorFlow's `decode_image(channels=3)` maps unusual PNGs to 8-bit RGB.

Checked in src/dataset/decode.rs (tests `sixteen_bit_png_keeps_the_high_byte_like_tensorflow` and
`grey_is_replicated_and_alpha_dropped_not_blended`). Produced with Python 3.11, TensorFlow 2.21,
Keras 3.15.1, numpy. Rerun from the repository root:

    python tests/reference/dataset_decode.py

Printed with TensorFlow 2.21:
    16-bit grey, red channel: [ 18  18  18 255   0   0]
    RGBA:                     [[[10, 20, 30], [40, 50, 60]]]
    grey + alpha:             [[[77, 77, 77], [200, 200, 200]]]
"""

import numpy as np
import tensorflow as tf


def decode(array):
    png = tf.io.encode_png(tf.constant(array))
    return tf.image.decode_image(png, channels=3, expand_animations=False).numpy()


def main():
    grey16 = np.array([[0x1280, 0x12FF, 0x127F, 0xFFFF, 0x0080, 0x00FF]], dtype=np.uint16)
    print("16-bit grey, red channel:", decode(grey16[..., None])[0, :, 0])
    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 128]]], dtype=np.uint8)
    print("RGBA:", decode(rgba).tolist())
    grey_alpha = np.array([[[77, 0], [200, 255]]], dtype=np.uint8)
    print("grey + alpha:", decode(grey_alpha).tolist())


if __name__ == "__main__":
    main()

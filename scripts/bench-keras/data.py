"""Writes the benchmark's data set: two classes of JPEG photos-to-be in class folders, as
keras.utils.image_dataset_from_directory and `runner sweep` both read them.

    python data.py OUT --train N --validation N [--seed S]

OUT/{train,validation}/{cats,dogs}/NNNN.jpg. Each image is a smooth random background with one
shape (an ellipse for "cats", a rectangle for "dogs") in a random colour, position and size, plus
pixel noise, at a random size between 200x150 and 500x400 (the range of the lecture's photos), so
that both sides decode and resize real JPEGs to 150x150. Deterministic given the seed. Written
into OUT.partial and renamed, so an interrupted run never leaves a partial OUT; an existing OUT is
kept as it is.
"""

import argparse
import os
import shutil
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def image(rng, label):
    w = int(rng.integers(200, 501))
    h = int(rng.integers(150, 401))
    # A smooth background: a coarse random grid, upsampled by repetition and blurred by averaging.
    coarse = rng.uniform(40, 215, size=(5, 5, 3))
    ys = np.linspace(0, 4, h)[:, None]
    xs = np.linspace(0, 4, w)[None, :]
    y0, x0 = np.floor(ys).astype(int).clip(0, 3), np.floor(xs).astype(int).clip(0, 3)
    fy, fx = (ys - y0)[..., None], (xs - x0)[..., None]
    bg = (
        coarse[y0, x0] * (1 - fy) * (1 - fx)
        + coarse[y0 + 1, x0] * fy * (1 - fx)
        + coarse[y0, x0 + 1] * (1 - fy) * fx
        + coarse[y0 + 1, x0 + 1] * fy * fx
    )
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.15, 0.35) * h, rng.uniform(0.15, 0.35) * w
    yy, xx = np.mgrid[0:h, 0:w]
    if label == 0:
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    else:
        mask = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
    img = np.where(mask[..., None], rng.uniform(0, 255, size=3), bg)
    img = img + rng.normal(0, 12, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--train", type=int, required=True)
    p.add_argument("--validation", type=int, required=True)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args()
    if a.train < 2 or a.validation < 2:
        sys.exit("data.py: --train and --validation need at least 2 images (one per class)")
    if os.path.isdir(a.out):
        print(f"data set: {a.out} (kept)")
        return
    import tensorflow as tf

    partial = a.out + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    for split, n in (("train", a.train), ("validation", a.validation)):
        for label, cls in enumerate(("cats", "dogs")):
            folder = os.path.join(partial, split, cls)
            os.makedirs(folder)
            count = n // 2 + (n % 2 if label == 0 else 0)
            for i in range(count):
                rng = np.random.default_rng([a.seed, 0 if split == "train" else 1, label, i])
                data = tf.io.encode_jpeg(image(rng, label), quality=90).numpy()
                with open(os.path.join(folder, f"{i:04d}.jpg"), "wb") as f:
                    f.write(data)
    os.rename(partial, a.out)
    print(f"data set: {a.out} ({a.train} training + {a.validation} validation JPEGs, written)")


if __name__ == "__main__":
    main()

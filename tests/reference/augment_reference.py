"""Reference values for `src/augment` (tests in `src/augment/reference_tests.rs`).

Runs the real Keras preprocessing layers and TensorFlow's `ImageProjectiveTransformV3` on small
hand-made images and writes `augment_reference.json` next to this file.

* Building blocks (`transforms`): each Keras layer's `transform_images` is called with a fixed
  transformation (the layer's random draw replaced by an explicit value), or the raw TF op with an
  explicit matrix.
* Whole pipelines (`apply`): the layers are called normally (`training=True`) but the backend's
  `random.uniform` is replaced by a scripted source that turns the listed u32 values into
  u = (k >> 9) / 2^23, exactly as `rng::uniform_f32` does, then `min + u * (max - min)` as
  `tf.random.stateless_uniform` does. This checks the draw order and how each draw becomes a
  parameter.

Generated with Python 3.11, TensorFlow 2.21.0, Keras 3.15.1 (TensorFlow backend), numpy 2.4.6, on CPU.
Rerun (from the repository root):

    CUDA_VISIBLE_DEVICES= /work/venv-ref/bin/python tests/reference/augment_reference.py
"""

import json
import math
import os
import pathlib

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
import keras.src.backend.tensorflow.random as tf_random  # noqa: E402

F32 = np.float32
OUT = pathlib.Path(__file__).with_name("augment_reference.json")


def make_image(height, width, salt):
    """Distinct, irregular values per pixel and channel, in 0..255."""
    data = np.zeros((height, width, 3), dtype=F32)
    for y in range(height):
        for x in range(width):
            for c in range(3):
                i = (y * width + x) * 3 + c
                data[y, x, c] = ((53 * i + 29 * y * y + 11 * x * c + salt) % 251) + 0.25 * c
    return data


IMAGES = {
    "a": make_image(4, 5, 3),  # H=4, W=5: non-square, half-integer centre row
    "b": make_image(6, 5, 17),  # H=6, W=5
    "c": make_image(5, 5, 101),  # square, integer centre
}


def batch(name):
    return tf.constant(IMAGES[name][None, ...])


def f32_list(values):
    """Shortest decimals that read back as the same float32 values."""
    return [float(str(v)) for v in np.asarray(values, dtype=F32).reshape(-1)]


def out_list(t):
    return f32_list(t)


# --- margin checks -------------------------------------------------------------------------
# Nearest interpolation and the wrap fill mode are discontinuous in the coordinate; a reference
# value is only robust if no sampled coordinate sits within a tiny distance of a jump (else an ulp
# of difference between float paths could flip the result). In TF 2.21 the constant mode is
# continuous with bilinear interpolation (neighbours outside read the fill value with their
# weight); the edge check for it is kept as a margin against older kernels' hard edge.


def coords(matrix, h, w):
    a0, a1, a2, b0, b1, b2 = [F32(v) for v in matrix[:6]]
    ys, xs = np.meshgrid(np.arange(h, dtype=F32), np.arange(w, dtype=F32), indexing="ij")
    xi = (a0 * xs + a1 * ys) + a2
    yi = (b0 * xs + b1 * ys) + b2
    return xi.astype(F32), yi.astype(F32)


def check_margin(matrix, h, w, fill_mode, interpolation, what):
    xi, yi = coords(matrix, h, w)
    eps = 1e-3
    for values, length in ((xi.ravel(), w), (yi.ravel(), h)):
        for v in values:
            v = float(v)
            if interpolation == "nearest":
                d = abs((v - 0.5) - round(v - 0.5))
                assert d > eps, f"{what}: coordinate {v} too close to a rounding boundary"
            if fill_mode == "constant":
                d = min(abs(v), abs(v - (length - 1)))
                assert d > eps, f"{what}: coordinate {v} too close to the image edge"
            if fill_mode == "wrap":
                # TF's wrap jumps wherever trunc(c / (len - 1)) changes.
                k = v / (length - 1)
                d = abs(k - round(k)) * (length - 1)
                assert d > eps, f"{what}: coordinate {v} too close to a wrap boundary"


# --- building blocks -----------------------------------------------------------------------
transforms = []


def sampling(fill_mode, fill_value, interpolation):
    return {"fill_mode": fill_mode, "fill_value": fill_value, "interpolation": interpolation}


def add_flip(name, image, mode):
    layer = keras.layers.RandomFlip(mode)
    out = layer.transform_images(batch(image), {"flips": tf.constant([[[[True]]]])}, training=True)
    transforms.append({"name": name, "image": image, "op": "flip", "mode": mode, "expected": out_list(out[0])})


def add_rotate(name, image, degrees, fill_mode="reflect", fill_value=0.0, interpolation="bilinear", check=True):
    h, w, _ = IMAGES[image].shape
    layer = keras.layers.RandomRotation(0.1, fill_mode=fill_mode, fill_value=fill_value, interpolation=interpolation)
    zeros = tf.zeros([1])
    matrix = layer._compute_affine_matrix(
        center_x=0.5, center_y=0.5, angle=tf.constant([degrees], tf.float32),
        translate_x=zeros, translate_y=zeros, scale=tf.ones([1]), shear_x=zeros, shear_y=zeros,
        height=h, width=w,
    )
    if check:
        check_margin(np.asarray(matrix)[0], h, w, fill_mode, interpolation, name)
    out = layer.transform_images(batch(image), {"rotation_matrix": matrix}, training=True)
    # The layer turns degrees into radians in float32: angle * float32(pi / 180).
    radians = F32(degrees) * F32(math.pi / 180.0)
    transforms.append({
        "name": name, "image": image, "op": "rotate", "angle_radians": float(radians),
        **sampling(fill_mode, fill_value, interpolation), "expected": out_list(out[0]),
    })


def add_zoom(name, image, zh, zw, fill_mode="reflect", fill_value=0.0, interpolation="bilinear"):
    h, w, _ = IMAGES[image].shape
    layer = keras.layers.RandomZoom(0.1, fill_mode=fill_mode, fill_value=fill_value, interpolation=interpolation)
    t = {"height_zoom": tf.constant([[zh]], tf.float32), "width_zoom": tf.constant([[zw]], tf.float32)}
    zooms = tf.constant([[zw, zh]], tf.float32)
    check_margin(np.asarray(layer._get_zoom_matrix(zooms, h, w))[0], h, w, fill_mode, interpolation, name)
    out = layer.transform_images(batch(image), t, training=True)
    transforms.append({
        "name": name, "image": image, "op": "zoom", "zh": float(F32(zh)), "zw": float(F32(zw)),
        **sampling(fill_mode, fill_value, interpolation), "expected": out_list(out[0]),
    })


def add_translate(name, image, dy, dx, fill_mode="reflect", fill_value=0.0, interpolation="bilinear"):
    h, w, _ = IMAGES[image].shape
    layer = keras.layers.RandomTranslation(0.1, 0.1, fill_mode=fill_mode, fill_value=fill_value, interpolation=interpolation)
    translations = tf.constant([[dx, dy]], tf.float32)
    check_margin(np.asarray(layer._get_translation_matrix(translations))[0], h, w, fill_mode, interpolation, name)
    out = layer.transform_images(batch(image), {"translations": translations}, training=True)
    transforms.append({
        "name": name, "image": image, "op": "translate", "dy": float(F32(dy)), "dx": float(F32(dx)),
        **sampling(fill_mode, fill_value, interpolation), "expected": out_list(out[0]),
    })


def add_contrast(name, image, factor):
    layer = keras.layers.RandomContrast(0.5)
    out = layer.transform_images(batch(image), {"contrast_factor": tf.constant([[[[factor]]]], tf.float32)}, training=True)
    transforms.append({"name": name, "image": image, "op": "contrast", "factor": float(F32(factor)), "expected": out_list(out[0])})


def add_affine(name, image, matrix, fill_mode, fill_value=0.0, interpolation="bilinear"):
    h, w, _ = IMAGES[image].shape
    matrix = [float(F32(v)) for v in matrix]
    check_margin(matrix, h, w, fill_mode, interpolation, name)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=batch(image), transforms=tf.constant([matrix + [0.0, 0.0]], tf.float32),
        output_shape=tf.constant([h, w], tf.int32), fill_value=tf.constant(fill_value, tf.float32),
        interpolation=interpolation.upper(), fill_mode=fill_mode.upper(),
    )
    transforms.append({
        "name": name, "image": image, "op": "affine", "matrix": matrix,
        **sampling(fill_mode, fill_value, interpolation), "expected": out_list(out[0]),
    })


add_flip("flip_horizontal", "a", "horizontal")
add_flip("flip_vertical", "a", "vertical")
add_flip("flip_both", "b", "horizontal_and_vertical")

add_rotate("rotate_30_reflect", "a", 30.0)
add_rotate("rotate_-25_reflect_b", "b", -25.0)
add_rotate("rotate_90_reflect", "a", 90.0, check=False)  # reflect + bilinear is continuous
add_rotate("rotate_90_reflect_square", "c", 90.0, check=False)
add_rotate("rotate_33_wrap", "a", 33.0, fill_mode="wrap")
add_rotate("rotate_33_constant", "a", 33.0, fill_mode="constant", fill_value=17.5)
add_rotate("rotate_33_nearest_fill", "a", 33.0, fill_mode="nearest")
add_rotate("rotate_33_reflect_nearest_interp", "a", 33.0, interpolation="nearest")
add_rotate("rotate_33_constant_nearest_interp", "b", 33.0, fill_mode="constant", fill_value=-3.0, interpolation="nearest")
add_rotate("rotate_160_reflect", "b", 160.0)

add_zoom("zoom_in_0.7", "a", 0.7, 0.7)
add_zoom("zoom_out_1.6", "a", 1.6, 1.6)
add_zoom("zoom_out_2.7_reflect", "b", 2.7, 2.7)
add_zoom("zoom_aniso_constant", "a", 0.8, 1.3, fill_mode="constant", fill_value=200.0)
add_zoom("zoom_out_wrap", "b", 1.45, 1.7, fill_mode="wrap")
add_zoom("zoom_out_nearest_fill", "a", 1.9, 1.3, fill_mode="nearest")
add_zoom("zoom_in_nearest_interp", "b", 0.55, 0.65, interpolation="nearest")

add_translate("translate_reflect", "a", 0.3 * 4, -0.27 * 5)
add_translate("translate_constant", "b", -1.7, 2.2, fill_mode="constant", fill_value=9.0)
add_translate("translate_wrap", "a", 1.3, 2.6, fill_mode="wrap")
add_translate("translate_nearest_fill", "b", -2.4, -1.1, fill_mode="nearest")
add_translate("translate_nearest_interp", "a", 0.8, -1.3, interpolation="nearest")

add_contrast("contrast_1.5_clips", "a", 1.5)
add_contrast("contrast_0.6", "b", 0.6)

# Far outside the image: several reflection periods, and TensorFlow's wrap arithmetic.
add_affine("affine_far_reflect", "a", [2.3, 0.41, -13.13, -0.31, 3.1, 6.77], "reflect")
add_affine("affine_far_wrap", "a", [2.3, 0.41, -13.13, -0.31, 3.1, 6.77], "wrap")
add_affine("affine_far_nearest", "b", [-1.73, 0.47, 4.33, 0.21, -2.63, 20.27], "nearest")
add_affine("affine_far_constant", "b", [0.7, 0.31, -1.23, -0.21, 0.9, 0.67], "constant", fill_value=33.0)
add_affine("affine_far_reflect_nearest_interp", "b", [-1.73, 0.47, 4.33, 0.21, -2.63, 20.27], "reflect", interpolation="nearest")


# --- whole pipelines with scripted draws ----------------------------------------------------
_queue = []


def scripted_uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
    dtype = dtype or "float32"
    k = _queue.pop(0)
    u = F32(k >> 9) * F32(1.0 / (1 << 23))
    rnd = tf.fill(shape, tf.constant(u, tf.float32))
    lo = tf.cast(minval, tf.float32)
    hi = tf.cast(maxval, tf.float32)
    return tf.cast(rnd * (hi - lo) + lo, dtype)


tf_random.uniform = scripted_uniform


def layer_for(step):
    kind = step["type"]
    geo = {k: step[k] for k in ("fill_mode", "fill_value", "interpolation") if k in step}
    if kind == "flip":
        return keras.layers.RandomFlip(step.get("mode", "horizontal_and_vertical"))
    if kind == "rotation":
        return keras.layers.RandomRotation(step["factor"], **geo)
    if kind == "zoom":
        return keras.layers.RandomZoom(step["height_factor"], step.get("width_factor"), **geo)
    if kind == "translation":
        return keras.layers.RandomTranslation(step["height_factor"], step["width_factor"], **geo)
    if kind == "contrast":
        return keras.layers.RandomContrast(step["factor"])
    raise ValueError(kind)


def u32_for(u):
    """The u32 whose top 23 bits give exactly u (u a multiple of 2^-23 in [0, 1))."""
    m = int(round(u * (1 << 23)))
    assert 0 <= m < (1 << 23)
    return (m << 9) | 0x1A5  # low bits are discarded by the draw


apply_cases = []


def add_apply(name, image, steps, us):
    draws = [u32_for(u) for u in us]
    _queue[:] = list(draws)
    x = batch(image)
    for step in steps:
        x = layer_for(step)(x, training=True)
    assert not _queue, f"{name}: {len(_queue)} draws left over"
    apply_cases.append({"name": name, "image": image, "steps": steps, "draws": draws, "expected": out_list(x[0])})


NOTEBOOK = [
    {"type": "flip", "mode": "horizontal"},
    {"type": "rotation", "factor": 0.1},
    {"type": "zoom", "height_factor": 0.1},
]
add_apply("notebook_flipped", "a", NOTEBOOK, [0.5, 0.8125, 0.25])  # u = 0.5 flips (u <= 0.5)
add_apply("notebook_not_flipped", "b", NOTEBOOK, [0.625, 0.0625, 0.96875])
add_apply("flip_both_one_draw", "a", [{"type": "flip"}, {"type": "contrast", "factor": 0.3}], [0.375, 0.75])
add_apply(
    "all_steps",
    "b",
    [
        {"type": "flip", "mode": "vertical"},
        {"type": "rotation", "factor": [-0.05, 0.15], "fill_mode": "constant", "fill_value": 40.0},
        {"type": "zoom", "height_factor": [-0.2, 0.3], "width_factor": 0.25, "fill_mode": "wrap"},
        {"type": "translation", "height_factor": 0.2, "width_factor": [-0.1, 0.3], "fill_mode": "nearest"},
        {"type": "contrast", "factor": [0.2, 0.5]},
    ],
    [0.125, 0.3125, 0.6875, 0.1875, 0.4375, 0.90625, 0.0625],
)
add_apply(
    "translation_nearest_interp",
    "a",
    [{"type": "translation", "height_factor": [0.1, 0.3], "width_factor": 0.2, "interpolation": "nearest"}],
    [0.34375, 0.78125],
)

doc = {
    "generated_by": "tests/reference/augment_reference.py",
    "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__},
    "images": {
        k: {"height": int(v.shape[0]), "width": int(v.shape[1]), "data": f32_list(v)}
        for k, v in IMAGES.items()
    },
    "transforms": transforms,
    "apply": apply_cases,
}
# One image or case per line: small diffs when a value changes.
lines = ["{"]
lines.append(f' "generated_by": {json.dumps(doc["generated_by"])},')
lines.append(f' "versions": {json.dumps(doc["versions"])},')
lines.append(' "images": {')
lines.append(",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in doc["images"].items()))
lines.append(" },")
for key, last in (("transforms", False), ("apply", True)):
    lines.append(f' "{key}": [')
    lines.append(",\n".join(f"  {json.dumps(case)}" for case in doc[key]))
    lines.append(" ]" if last else " ],")
lines.append("}")
OUT.write_text("\n".join(lines) + "\n")
assert json.loads(OUT.read_text()) == doc
print(f"wrote {OUT} ({len(transforms)} transforms, {len(apply_cases)} pipelines)")

"""The kernel half of the side-by-side benchmark: the work `runner bench` times, done by Keras/TF.

- conv_forward: VGG16's conv base (include_top=False), forward, f32, batch B at S x S;
- finetune_step: forward through base + head (Flatten, Dense(256, relu), Dense(1)), backward and
  Adam (lr 1e-5) on block 5 and the head, blocks 1-4 frozen: a fine-tuning cell's training step.

Random inputs and (seeded) random weights, as `runner bench` uses: the cost does not depend on
the values. GFLOP are counted exactly as `runner bench` counts them (2 per multiply-add; the
weight and input gradients of trainable layers, no input gradient for the first trainable
layer). Times are per call after one untimed warm-up; CPU seconds are the whole process's user +
system time (all threads), so the figure stays comparable on a machine with other work.

Run it with the benchmark's venv: target/bench-venv/bin/python scripts/bench-keras/kernel.py

Prints one CSV line per benchmark: benchmark,batch,image_size,iterations,wall_s,cpu_s,gflop_per_image
"""
import argparse
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

CH = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
POOL_AFTER = {1, 3, 6, 9, 12}


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def conv_flops(size, trainable_from=None):
    """GFLOP per image of the 13 convolutions (+ head when trainable_from is given)."""
    total, cin, s = 0.0, 3, size
    for i, cout in enumerate(CH):
        products = 9 * cin * cout * s * s
        passes = 1
        if trainable_from is not None and i > trainable_from:
            passes = 3
        elif trainable_from is not None and i == trainable_from:
            passes = 2
        total += 2.0 * products * passes
        cin = cout
        if i in POOL_AFTER:
            s //= 2
    if trainable_from is not None:
        flat = cin * s * s
        total += 2.0 * (flat * 256 + 256 * 1) * 3
    return total / 1e9


def timed(step, iterations):
    step()
    w0, c0 = time.perf_counter(), cpu_seconds()
    for _ in range(iterations):
        step()
    return time.perf_counter() - w0, cpu_seconds() - c0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=150)
    ap.add_argument("--iterations", type=int, default=5)
    a = ap.parse_args()
    keras.utils.set_random_seed(0)
    s, b = a.image_size, a.batch
    x = np.random.default_rng(0).uniform(-120, 150, (b, s, s, 3)).astype("float32")
    y = (np.arange(b) % 2).astype("float32").reshape(b, 1)
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(s, s, 3))
    base.trainable = False
    fwd = tf.function(lambda t: base(t, training=False))
    xt = tf.constant(x)
    wall, cpu = timed(lambda: fwd(xt).numpy(), a.iterations)
    print(f"conv_forward,{b},{s},{a.iterations},{wall:.4f},{cpu:.4f},{conv_flops(s):.4f}")

    base.trainable = True
    for layer in base.layers:
        layer.trainable = layer.name.startswith("block5")
    model = keras.Sequential([
        base,
        keras.layers.Flatten(),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-5),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))
    wall, cpu = timed(lambda: model.train_on_batch(x, y), a.iterations)
    print(f"finetune_step,{b},{s},{a.iterations},{wall:.4f},{cpu:.4f},{conv_flops(s, 10):.4f}")


if __name__ == "__main__":
    main()

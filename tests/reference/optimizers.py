"""Reference values for src/train/optim.rs: real Keras optimizers, several steps on fixed gradients.

Produced with TensorFlow 2.21.0 and Keras 3.15.1 (TensorFlow backend), float32:
    python tests/reference/optimizers.py > tests/reference/optimizers.json
"""
import json

import numpy as np
import keras

CASES = [
    ("adam defaults", dict(name="adam", learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7)),
    ("adam custom", dict(name="adam", learning_rate=3e-2, beta_1=0.8, beta_2=0.99, epsilon=1e-3)),
    ("rmsprop defaults", dict(name="rmsprop", learning_rate=1e-3, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False)),
    ("rmsprop momentum", dict(name="rmsprop", learning_rate=1e-2, rho=0.8, momentum=0.9, epsilon=1e-7, centered=False)),
    ("rmsprop centered", dict(name="rmsprop", learning_rate=1e-2, rho=0.9, momentum=0.5, epsilon=1e-6, centered=True)),
]


def make(cfg):
    kw = {k: v for k, v in cfg.items() if k != "name"}
    return keras.optimizers.Adam(**kw) if cfg["name"] == "adam" else keras.optimizers.RMSprop(**kw)


rng = np.random.default_rng(20261128)
out = []
for label, cfg in CASES:
    w0 = rng.normal(size=6).astype(np.float32)
    # Gradients spanning tiny to large magnitudes and both signs, including an exact zero.
    grads = [(rng.normal(size=6) * 10.0 ** rng.integers(-6, 2, size=6)).astype(np.float32) for _ in range(4)]
    grads[1][2] = 0.0
    var = keras.Variable(w0.copy())
    opt = make(cfg)
    weights = []
    for g in grads:
        opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
        weights.append(np.asarray(var.numpy(), dtype=np.float32).tolist())
    out.append(dict(label=label, optimizer=cfg, w0=w0.tolist(), grads=[g.tolist() for g in grads], weights=weights))

print(json.dumps(dict(generator="tests/reference/optimizers.py", tensorflow="2.21.0", keras=keras.__version__, cases=out), indent=1))

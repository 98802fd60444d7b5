"""Reference values for src/train/loss.rs: TensorFlow's sigmoid cross-entropy from logits (what
Keras's binary_crossentropy computes on the TensorFlow backend) and the gradient of its batch mean.

Produced with TensorFlow 2.21.0, float32:
    python tests/reference/bce.py > tests/reference/bce.json
"""
import json

import numpy as np
import tensorflow as tf

logits = np.array([-1000.0, -88.5, -20.0, -3.0, -0.5, 0.0, 1e-4, 0.7, 4.0, 30.0, 100.0, 1000.0], np.float32)
labels = np.array([0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1], np.float32)
z = tf.Variable(logits)
with tf.GradientTape() as tape:
    per_sample = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=z)
    mean = tf.reduce_mean(per_sample)
grad = tape.gradient(mean, z)
print(json.dumps(dict(
    generator="tests/reference/bce.py", tensorflow=tf.__version__,
    logits=logits.tolist(), labels=labels.tolist(),
    per_sample=per_sample.numpy().tolist(), grad_of_mean=grad.numpy().tolist()), indent=1))

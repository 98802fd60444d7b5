"""Reference values for src/train/loss.rs: softmax cross-entropy from logits with integer labels
(Keras's SparseCategoricalCrossentropy(from_logits=True) = torch.nn.functional.cross_entropy),
the gradient of its batch mean, and sparse categorical accuracy (argmax, first index on ties).

Produced with PyTorch (version printed in the output), float32:
    python tests/reference/softmax_ce.py > tests/reference/softmax_ce.json
"""
import json

import torch

torch.manual_seed(0)
# Five classes; rows include extreme logits (|z| ~ 1e3, where a naive exp overflows), a tie
# between the two largest logits and a row of equal logits.
logits = torch.tensor([
    [0.1, -1.2, 2.0, 0.0, 0.5],
    [1000.0, -1000.0, 0.0, 3.0, 999.0],
    [-500.0, -480.0, -490.0, -501.0, -700.0],
    [2.0, 2.0, -1.0, 0.0, 1.0],
    [0.0, 0.0, 0.0, 0.0, 0.0],
    [-3.0, 7.5, 1.0, 88.0, -88.0],
], dtype=torch.float32)
labels = torch.tensor([2, 4, 1, 1, 3, 0])
z = logits.clone().requires_grad_(True)
per_sample = torch.nn.functional.cross_entropy(z, labels, reduction="none")
mean = per_sample.mean()
mean.backward()
predicted = logits.argmax(dim=1)  # ties resolve to the first index, as tf.argmax does
print(json.dumps(dict(
    generator="tests/reference/softmax_ce.py", torch=torch.__version__,
    classes=logits.shape[1],
    logits=logits.flatten().tolist(), labels=labels.tolist(),
    per_sample=per_sample.detach().tolist(), grad_of_mean=z.grad.flatten().tolist(),
    correct=int((predicted == labels).sum())), indent=1))

"""The lecture notebook's four variants, as the notebook writes them, timed.

    python notebook.py --train DIR --validation DIR --weights FILE.h5 --epochs N --seeds N
                       [--size 150] --json OUT.json

Per variant and seed, the notebook's cells: image_dataset_from_directory (labels="inferred",
label_mode="int", batch_size=32, image_size=(150, 150)), x/255 by ds.map (or Rescaling(1./255)
after the augmentation layers, as the augmented cells do), VGG16(include_top=False,
input_shape=(150, 150, 3)) frozen (feature extraction) or trainable from block5_conv1
(fine-tuning), Flatten -> Dense(256, relu) -> Dense(1, sigmoid), compile(adam,
binary_crossentropy, accuracy), fit(train, epochs, validation_data). Two departures, both
needed to run it at all: the weights are the benchmark's file (VGG16(weights=PATH): the same
network `runner` loads; no download), and the augmented variants put RandomFlip /
RandomRotation / RandomZoom first, where the notebook means them to act (appended to the built
model, as the notebook writes it, they would act on its output and fail). Each variant builds a
fresh conv base, as each `runner` cell does. TensorFlow's thread pools are left at their defaults.

Writes wall and process CPU seconds (all threads) per variant, for the TensorFlow import, and for
the whole process, plus the final val_accuracy of each cell and the peak resident memory.
"""

import argparse
import json
import os
import resource
import sys
import time

WALL0 = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

VARIANTS = ["feature_extraction", "feature_extraction_aug", "fine_tuning", "fine_tuning_aug"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--train", required=True)
    p.add_argument("--validation", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--seeds", type=int, required=True)
    p.add_argument("--size", type=int, default=150)
    p.add_argument("--json", required=True)
    a = p.parse_args()
    size = (a.size, a.size)

    import tensorflow
    from tensorflow import keras
    from keras import Sequential
    from keras.layers import Dense, Flatten
    from keras.applications.vgg16 import VGG16
    from tensorflow.keras import layers

    imported = {"wall": time.perf_counter() - WALL0, "cpu": time.process_time()}

    def datasets(normalize):
        train_ds = keras.utils.image_dataset_from_directory(
            directory=a.train, labels="inferred", label_mode="int", batch_size=32, image_size=size
        )
        validation_ds = keras.utils.image_dataset_from_directory(
            directory=a.validation, labels="inferred", label_mode="int", batch_size=32, image_size=size
        )
        if normalize:

            def process(image, label):
                image = tensorflow.cast(image / 255.0, tensorflow.float32)
                return image, label

            train_ds = train_ds.map(process)
            validation_ds = validation_ds.map(process)
        return train_ds, validation_ds

    def cell(variant):
        aug = variant.endswith("_aug")
        conv_base = VGG16(weights=a.weights, include_top=False, input_shape=(a.size, a.size, 3))
        if variant.startswith("fine_tuning"):
            conv_base.trainable = True
            set_trainable = False
            for layer in conv_base.layers:
                if layer.name == "block5_conv1":
                    set_trainable = True
                layer.trainable = set_trainable
        else:
            conv_base.trainable = False
        model = Sequential()
        if aug:
            data_augmentation = Sequential(
                [
                    layers.RandomFlip("horizontal", input_shape=(a.size, a.size, 3)),
                    layers.RandomRotation(0.1),
                    layers.RandomZoom(0.1),
                ]
            )
            model.add(data_augmentation)
            model.add(layers.Rescaling(1.0 / 255))
        model.add(conv_base)
        model.add(Flatten())
        model.add(Dense(256, activation="relu"))
        model.add(Dense(1, activation="sigmoid"))
        train_ds, validation_ds = datasets(normalize=not aug)
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        history = model.fit(train_ds, epochs=a.epochs, validation_data=validation_ds, verbose=2)
        return history.history["val_accuracy"][-1]

    out = {
        "tensorflow": tensorflow.__version__,
        "keras": keras.__version__,
        "import": imported,
        "variants": {},
    }
    for variant in VARIANTS:
        w0, c0 = time.perf_counter(), time.process_time()
        accs = []
        for seed in range(a.seeds):
            keras.utils.set_random_seed(seed)
            print(f"keras: {variant} seed {seed}", file=sys.stderr, flush=True)
            accs.append(float(cell(variant)))
        out["variants"][variant] = {
            "wall": time.perf_counter() - w0,
            "cpu": time.process_time() - c0,
            "val_acc": accs,
        }
    out["total"] = {"wall": time.perf_counter() - WALL0, "cpu": time.process_time()}
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tmp = a.json + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, a.json)


if __name__ == "__main__":
    main()

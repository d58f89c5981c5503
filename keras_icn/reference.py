"""The reference classifier: an independent feature space for judging samples.

Sample-quality measures (`keras_icn.quality`) compare synthesized and real
images by the penultimate activations ("features") of a classifier trained on
the same dataset, never by the model under test, which would grade its own
samples. `load_or_train` builds it once per dataset with plain cross-entropy,
a small CNN (3x3 convolutions, unlike keras-icn's networks), and
caches it, so every model evaluated on that dataset, ICN and baseline alike, is
measured in the same space.
"""

import os

import keras
import numpy as np
import tensorflow as tf
from absl import flags, logging
from keras import layers

from keras_icn import data, files

FEATURES = "features"  # the name of the feature layer
VALUE_RANGE = (0.0, 1.0)  # the reference classifier's input range
DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".keras", "keras_icn", "reference")


def build(image_shape, num_classes, feature_units=128):
    """3x3 convolutions (32, 64 filters) each with 2x2 max pooling, then `feature_units` features."""
    inputs = keras.Input(image_shape)
    x = inputs
    for filters in (32, 64):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    features = layers.Dense(feature_units, activation="relu", name=FEATURES)(x)
    return keras.Model(inputs, layers.Dense(num_classes)(features), name="reference")


def path(directory, dataset):
    return os.path.join(directory, f"{dataset}.keras")


def load_or_train(dataset, data_dir=None, directory=None, epochs=3, train_examples=None,
                  batch_size=128, seed=0):
    """The dataset's reference classifier, from `directory`, trained there when missing.

    Trained on the dataset's training split (its first `train_examples`), Adam
    at 1e-3, `epochs` epochs; its test accuracy is logged and written beside
    the model (`<dataset>.json`). The file is written atomically; a cached one
    is reused whatever the arguments, so delete it to retrain.

    Returns:
        The classifier, a `keras.Model` on images in `VALUE_RANGE` (see `features`).
    """
    directory = directory or DEFAULT_DIR
    model_path = path(directory, dataset)
    if tf.io.gfile.exists(model_path):
        return keras.models.load_model(model_path)
    info = data.dataset_info(dataset, data_dir)
    split = f"train[:{train_examples}]" if train_examples else "train"
    logging.info("Training the reference classifier of %s (%s, %d epochs) into %s",
                 dataset, split, epochs, model_path)
    keras.utils.set_random_seed(seed)
    model = build(info.features["image"].shape, info.features["label"].num_classes)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train = data.load_split(dataset, split, data_dir, VALUE_RANGE)
    steps = (train_examples or info.splits["train"].num_examples) // batch_size
    model.fit(data.train_pipeline(train, batch_size, seed, epochs=epochs),
              epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0)  # shuffled above
    test = data.eval_pipeline(data.load_split(dataset, "test", data_dir, VALUE_RANGE), 500)
    accuracy = float(model.evaluate(test, return_dict=True, verbose=0)["accuracy"])
    logging.info("Reference classifier of %s: test accuracy %.4f", dataset, accuracy)
    tf.io.gfile.makedirs(directory)
    temporary = files.temporary_path(model_path)
    model.save(temporary)
    files.commit(temporary, model_path)
    files.write_json(os.path.join(directory, f"{dataset}.json"), {
        "dataset": dataset, "split": split, "epochs": epochs, "test_accuracy": accuracy})
    return model


def define_flags():
    """The absl flags of a tool that measures samples: where the reference classifier
    is cached, and how a missing one is trained."""
    flags.DEFINE_string("reference_dir", DEFAULT_DIR,
                        "Where reference classifiers are cached (trained when missing).")
    flags.DEFINE_integer("reference_epochs", 3, "Epochs of a reference classifier trained here.")
    flags.DEFINE_integer("reference_examples", None, "Train a missing reference classifier on "
                         "the first N training examples (default: all).")


def from_flags(dataset, data_dir):
    """`load_or_train` with the flags of `define_flags`."""
    values = flags.FLAGS
    return load_or_train(dataset, data_dir, values.reference_dir, values.reference_epochs,
                         values.reference_examples)


def features(reference, images, value_range=VALUE_RANGE, batch_size=500):
    """The reference classifier's features of `images` (in `value_range`), `(n, units)` numpy."""
    extractor = keras.Model(reference.input, reference.get_layer(FEATURES).output)
    images = np.asarray(images, np.float32)
    if tuple(value_range) != VALUE_RANGE:
        images = data.scale_images(data.unscale_images(images, value_range), VALUE_RANGE).numpy()
    return np.concatenate([extractor(images[i:i + batch_size], training=False).numpy()
                           for i in range(0, len(images), batch_size)]
                          or [np.zeros((0, reference.get_layer(FEATURES).units), np.float32)])

"""The reference classifier: an independent feature space for judging samples.

Sample-quality measures (`keras_icn.quality`) compare synthesized and real
images by the penultimate activations ("features") of a classifier trained on
the same dataset, never by the model under test, which would grade its own
samples. `load_or_train` builds it once per dataset with plain cross-entropy,
a small CNN (3x3 convolutions, unlike keras-icn's networks) for images, a
small 1-D CNN for series, a small MLP for tables, and caches it, so every
model evaluated on that dataset, ICN and baseline alike, is measured in the
same space. An image reference takes images in `VALUE_RANGE`; a series or
table reference standardizes raw values itself (a `Normalization` layer fitted
to its training split), so it takes the data's raw units.
"""

import os

import keras
import numpy as np
import tensorflow as tf
from absl import flags, logging
from keras import layers

from keras_icn import data, datasets, files

FEATURES = "features"  # the name of the feature layer
VALUE_RANGE = (0.0, 1.0)  # the reference classifier's input range
DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".keras", "keras_icn", "reference")


def build(input_shape, num_classes, feature_units=128, raw_inputs=None):
    """Images: 3x3 convolutions (32, 64 filters) each with 2x2 max pooling.
    Series `(T, C)`: 1-D convolutions of width 5 (32, 64 filters), global
    average pooling. Tables `(F,)`: a dense layer of 128 units. Then
    `feature_units` features. With `raw_inputs` (training examples in raw
    units), a first layer standardizes per feature (per channel for series)."""
    inputs = keras.Input(input_shape)
    x = inputs
    if raw_inputs is not None:
        normalization = layers.Normalization(axis=-1)
        normalization.adapt(np.asarray(raw_inputs, np.float32))
        x = normalization(x)
    if len(input_shape) == 3:
        for filters in (32, 64):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
            x = layers.MaxPooling2D()(x)
        x = layers.Flatten()(x)
    elif len(input_shape) == 2:
        for filters in (32, 64):
            x = layers.Conv1D(filters, 5, padding="same", activation="relu")(x)
        x = layers.GlobalAveragePooling1D()(x)
    else:
        x = layers.Dense(128, activation="relu")(layers.Flatten()(x))
    features = layers.Dense(feature_units, activation="relu", name=FEATURES)(x)
    return keras.Model(inputs, layers.Dense(num_classes)(features), name="reference")


def path(directory, dataset):
    """Where `dataset`'s reference is cached (a file name from any dataset name)."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset)
    return os.path.join(directory, f"{name}.keras")


def load_or_train(dataset, data_dir=None, directory=None, epochs=3, train_examples=None,
                  batch_size=128, seed=0, label_column=None, series_length=None):
    """The dataset's reference classifier, from `directory`, trained there when missing.

    Trained on the dataset's training split (its first `train_examples`), Adam
    at 1e-3, `epochs` epochs; its test accuracy is logged and written beside
    the model (`<dataset>.json`). The file is written atomically; a cached one
    is reused whatever the arguments, so delete it to retrain.

    Returns:
        The classifier, a `keras.Model` on images in `VALUE_RANGE`, or on a
        series or table dataset's raw units (see `features`).
    """
    directory = directory or DEFAULT_DIR
    model_path = path(directory, dataset)
    if tf.io.gfile.exists(model_path):
        return keras.models.load_model(model_path)
    source = datasets.open_dataset(dataset, data_dir, label_column=label_column,
                                   series_length=series_length)
    split = f"train[:{train_examples}]" if train_examples else "train"
    logging.info("Training the reference classifier of %s (%s, %d epochs) into %s",
                 dataset, split, epochs, model_path)
    keras.utils.set_random_seed(seed)
    units = _Units()  # images: scaled to VALUE_RANGE; series and tables: raw
    raw = None if source.kind == "image" else source.arrays(split, None)[0]
    model = build(source.input_shape, source.num_classes, raw_inputs=raw)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train = source.examples(split, units)
    batch_size = min(batch_size, source.num_examples(split))
    steps = source.num_examples(split) // batch_size
    epochs = epochs if source.kind == "image" else max(epochs, 30)  # small sets: more passes
    model.fit(data.train_pipeline(train, batch_size, seed, epochs=epochs),
              epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0)  # shuffled above
    test = data.eval_pipeline(source.examples("test", units), 500)
    accuracy = float(model.evaluate(test, return_dict=True, verbose=0)["accuracy"])
    logging.info("Reference classifier of %s: test accuracy %.4f", dataset, accuracy)
    tf.io.gfile.makedirs(directory)
    temporary = files.temporary_path(model_path)
    model.save(temporary)
    files.commit(temporary, model_path)
    files.write_json(os.path.splitext(model_path)[0] + ".json", {
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


def from_flags(dataset, data_dir, **options):
    """`load_or_train` with the flags of `define_flags` (and a source's `options`)."""
    values = flags.FLAGS
    return load_or_train(dataset, data_dir, values.reference_dir, values.reference_epochs,
                         values.reference_examples, **options)


class _Units:
    """What `datasets.Dataset.examples` asks of a model: images in
    `VALUE_RANGE`; series and tables unchanged (raw)."""

    value_range = VALUE_RANGE

    @staticmethod
    def from_raw(values):
        return tf.cast(values, tf.float32)


def features(reference, images, value_range=VALUE_RANGE, batch_size=500):
    """The reference classifier's features of `images`, `(n, units)` numpy:
    images in `value_range`, or a series or table reference's raw units
    (`value_range` unused)."""
    extractor = keras.Model(reference.input, reference.get_layer(FEATURES).output)
    images = np.asarray(images, np.float32)
    if images.ndim == 4 and tuple(value_range) != VALUE_RANGE:
        images = data.scale_images(data.unscale_images(images, value_range), VALUE_RANGE).numpy()
    return np.concatenate([extractor(images[i:i + batch_size], training=False).numpy()
                           for i in range(0, len(images), batch_size)]
                          or [np.zeros((0, reference.get_layer(FEATURES).units), np.float32)])

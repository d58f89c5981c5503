"""The SavedModel that TF Serving loads: `classify` and `synthesize` signatures.

Both take and return raw values and apply the model's own preprocessing
(`model.from_raw`, `model.to_raw`), so clients need no keras-icn code: pixels
(0..255, as TFDS stores them) for an image model, the units of the data for a
series or table model with `standardization`. An image model's signatures name
their inputs and outputs `images`; any other model's `inputs`. The
synthesize signature runs the same `synthesize_from_prior` code as training and
`model.synthesize`, with one seed per sample. Nothing in the SavedModel is
XLA-compiled (TF Serving cannot run such functions on every platform), and
only the network and p_0 are in it: the training pool is not.
"""

import os

import keras
import tensorflow as tf

from keras_icn import files, sampler

CLASSIFY = "classify"  # also `serving_default`
SYNTHESIZE = "synthesize"


def input_name(model):
    """What the signatures call the model's inputs: `images` or `inputs`."""
    return "images" if model.takes_pixels else "inputs"


def _classify_function(model):
    def classify(values):
        # Checked at run time: a SavedModel signature does not check shapes, and
        # a convolution fed the wrong rank aborts the whole server process.
        values = tf.ensure_shape(values, (None,) + model.input_shape, name="check_inputs")
        checks = []
        if model.takes_pixels:  # finite pixels in 0..255; non-finite ones are unknown
            finite = tf.where(tf.math.is_finite(values), values, 0.0)
            checks = [tf.debugging.assert_greater_equal(finite, 0.0, message=(
                          "images must be raw pixels in [0, 255]")),
                      tf.debugging.assert_less_equal(finite, 255.0, message=(
                          "images must be raw pixels in [0, 255]"))]
        with tf.control_dependencies(checks):
            return model.open_set_outputs(model.from_raw(values))

    return classify


def _synthesize_function(model, num_steps):
    def synthesize(labels, seeds):
        labels = tf.ensure_shape(labels, (None,), name="check_labels")
        seeds = tf.ensure_shape(seeds, (None,), name="check_seeds")
        checks = [
            tf.debugging.assert_equal(tf.shape(labels), tf.shape(seeds), message=(
                "labels and seeds must have the same length: one seed per requested image")),
            tf.debugging.assert_greater_equal(labels, 0, message="labels must be >= 0"),
            tf.debugging.assert_less(labels, max(model.num_classes, 1), message=(
                f"labels must be < num_classes={model.num_classes}")),
        ]
        with tf.control_dependencies(checks):
            per_sample_seeds = tf.stack(
                [tf.cast(seeds, tf.int64), tf.zeros_like(seeds, tf.int64)], axis=1)
            samples = model.synthesize_from_prior(labels, num_steps, per_sample_seeds)
        return {input_name(model): model.to_raw(samples),
                "scores": sampler.target_probability(model(samples), labels)}

    return synthesize


def export_saved_model(model, path, num_steps=None, overwrite=False):
    """Writes `model` as a SavedModel for TF Serving to `path`, atomically.

    Signatures (see export/README.md):
      `classify` (= `serving_default`): `images` float32 `[batch, H, W, C]` in
        0..255 (any other model: `inputs` float32 `[batch, ...]` in raw units)
        -> `logits`, `probabilities`, `classes` (int64; -1 for a non-finite
        input), `unknown_score` (float32; higher: less like any class) and
        `is_unknown` (bool; the model's calibrated `unknown_threshold` is baked
        in, see `keras_icn.open_set`).
      `synthesize`: `labels` int32 `[batch]`, `seeds` int32 `[batch]` ->
        `images` float32 `[batch, H, W, C]` in 0..255 (or `inputs` in raw
        units), `scores` (the requested class's probability). The same seed
        and label give the same sample.

    Args:
        model: a trained `IntrospectiveClassifier`.
        path: the version directory, e.g. `<export_base>/1`.
        num_steps: Langevin steps of `synthesize`; default `model.synthesis_steps`.
        overwrite: replace an existing `path`.
    """
    if tf.io.gfile.exists(path) and not overwrite:
        raise ValueError(f"{path} exists; pass overwrite=True (--overwrite) or another version.")
    num_steps = model.synthesis_steps if num_steps is None else int(num_steps)
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1. Received: num_steps={num_steps}")
    archive = keras.export.ExportArchive()
    archive.track(model.network)
    archive.track(model.prior)
    archive.add_endpoint(CLASSIFY, _classify_function(model), input_signature=[
        tf.TensorSpec((None,) + model.input_shape, tf.float32, name=input_name(model))])
    archive.add_endpoint(SYNTHESIZE, _synthesize_function(model, num_steps), input_signature=[
        tf.TensorSpec((None,), tf.int32, name="labels"),
        tf.TensorSpec((None,), tf.int32, name="seeds")])
    parent = os.path.dirname(os.path.abspath(path))
    tf.io.gfile.makedirs(parent)
    temporary = files.temporary_path(path)
    archive.write_out(temporary, verbose=False)
    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)
    tf.io.gfile.rename(temporary, path)
    return path

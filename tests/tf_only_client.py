"""Loads an exported SavedModel with TensorFlow alone, as TF Serving would, and
reports what its signatures return, as JSON on stdout.

    python tests/tf_only_client.py EXPORT_DIR INPUTS.npz TEST_TFRECORD [REQUESTS_DIR]

TEST_TFRECORD is a TFDS test split's file (MNIST's or CIFAR-10's: PNG `image`,
int `label`); the image shape comes from the `classify` signature.
"""

import glob
import json
import os
import sys

import numpy as np
import tensorflow as tf


def call(signature, **inputs):
    return {k: v.numpy() for k, v in signature(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def row_format(signature, instances):
    """TF Serving's row ("instances") format: instance i is row i of every named input."""
    names = list(signature.structured_input_signature[1])
    specs = signature.structured_input_signature[1]
    inputs = {n: np.array([i[n] for i in instances], dtype=specs[n].dtype.as_numpy_dtype)
              for n in names}
    return call(signature, **inputs)


def main(export_dir, inputs_path, test_records, requests_dir=None):
    loaded = tf.saved_model.load(export_dir)
    classify, synthesize = loaded.signatures["classify"], loaded.signatures["synthesize"]
    image_shape = tuple(classify.structured_input_signature[1]["images"].shape[1:])
    inputs = np.load(inputs_path)
    report = {"signatures": sorted(loaded.signatures.keys()),
              "variables": sorted(v.name for v in loaded.variables)}
    report["logits"] = call(classify, images=inputs["raw_images"])["logits"].tolist()

    labels = np.arange(20, dtype=np.int32) % 10
    seeds = np.arange(20, dtype=np.int32)
    first = call(synthesize, labels=labels, seeds=seeds)
    again = call(synthesize, labels=labels, seeds=seeds)
    other = call(synthesize, labels=labels, seeds=seeds + 100)
    alone = call(synthesize, labels=labels[5:6], seeds=seeds[5:6])
    report["synthesize"] = {
        "shape": list(first["images"].shape), "dtype": str(first["images"].dtype),
        "min": float(first["images"].min()), "max": float(first["images"].max()),
        "scores_shape": list(first["scores"].shape),
        "deterministic": bool(np.array_equal(first["images"], again["images"])),
        "differs_across_seeds": bool(not np.allclose(first["images"], other["images"])),
        "batch_independent": bool(np.allclose(alone["images"][0], first["images"][5], atol=1e-4)),
        "classified": call(classify, images=first["images"])["classes"].tolist(),
        "requested": labels.tolist(),
    }

    errors = {}
    for name, signature, bad in [
            ("label_out_of_range", synthesize, dict(labels=np.array([10], np.int32), seeds=np.array([1], np.int32))),
            ("lengths_differ", synthesize, dict(labels=np.array([1, 2], np.int32), seeds=np.array([1], np.int32))),
            ("image_rank", classify, dict(images=np.zeros((2,) + image_shape[:-1], np.float32)))]:
        try:
            call(signature, **bad)
            errors[name] = None
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
            errors[name] = str(error)[:2000]
    report["errors"] = errors

    requests = {}
    for path in sorted(glob.glob(os.path.join(requests_dir, "*.json"))) if requests_dir else []:
        with open(path) as f:
            request = json.load(f)
        outputs = row_format(loaded.signatures[request["signature_name"]], request["instances"])
        requests[os.path.basename(path)] = {k: list(v.shape) for k, v in outputs.items()}
    report["requests"] = requests

    # Test accuracy through `classify`, reading TFDS's TFRecords with plain tf.data.
    spec = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}
    test = tf.data.TFRecordDataset(test_records).map(lambda r: tf.io.parse_single_example(r, spec))
    test = test.map(lambda e: (tf.cast(tf.io.decode_png(e["image"]), tf.float32), e["label"])).batch(500)
    correct = total = 0
    for images, labels in test:
        classes = classify(images=images)["classes"].numpy()
        correct += int(np.sum(classes == labels.numpy()))
        total += len(classes)
    report["test_accuracy"] = correct / total
    report["keras_icn_imported"] = "keras_icn" in sys.modules
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:])

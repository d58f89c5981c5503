"""The default run's export, as TF Serving would load it: TensorFlow alone, no keras_icn.

    python results/cifar10_fast/default_run/served_check.py /tmp/cifar-icn-accept/export/1 \
        ../shared/datasets/tfds/cifar10/3.0.2/cifar10-test.tfrecord-00000-of-00001

Prints the test accuracy through `classify` (0..255 pixels in, each image with its mirror
image inside the signature) and how often `classify` puts `synthesize`'s images (10 per
class, seeds 0..99) in the class asked for.
"""
import json
import sys

import numpy as np
import tensorflow as tf

export_dir, records = sys.argv[1], sys.argv[2]
loaded = tf.saved_model.load(export_dir)
classify, synthesize = loaded.signatures["classify"], loaded.signatures["synthesize"]
spec = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}
test = (tf.data.TFRecordDataset(records).map(lambda r: tf.io.parse_single_example(r, spec))
        .map(lambda e: (tf.cast(tf.io.decode_png(e["image"]), tf.float32), e["label"])).batch(500))
correct = total = 0
for images, labels in test:
    classes = classify(images=images)["classes"].numpy()
    correct += int(np.sum(classes == labels.numpy()))
    total += len(classes)
labels = np.repeat(np.arange(10, dtype=np.int32), 10)
samples = synthesize(labels=tf.constant(labels), seeds=tf.constant(np.arange(100, dtype=np.int32)))
classified = classify(images=samples["images"])["classes"].numpy()
print(json.dumps({"test_images": total, "test_accuracy": correct / total,
                  "synthesized": len(labels),
                  "synthesized_classified_as_requested": float(np.mean(classified == labels)),
                  "keras_icn_imported": "keras_icn" in sys.modules}))

"""TensorFlow 2.21: with oneDNN operations on, MirroredStrategy fails on a batch
that leaves a replica with no examples.

    pip install tensorflow==2.21.0 keras==3.15.1
    python onednn_empty_replica.py 513                          # fails (oneDNN on)
    TF_ENABLE_ONEDNN_OPTS=0 python onednn_empty_replica.py 513  # passes
    python onednn_empty_replica.py 512                          # passes

A plain Keras CNN on two logical CPU devices, evaluated on N random images in
batches of 64. With N = 513 the last batch has one image, so replica 1 gets
none, and oneDNN's fused convolution fails:
"INVALID_ARGUMENT: input depth must be evenly divisible by filter depth: 1 vs 32".
oneDNN is on by default on Intel CPUs and AMD Zen 4; TF_ENABLE_ONEDNN_OPTS=1
turns it on elsewhere. No keras-icn code is involved.
"""

import sys

import numpy as np
import tensorflow as tf
import keras

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
count = int(sys.argv[1]) if len(sys.argv) > 1 else 513
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
rng = np.random.default_rng(0)
images = rng.uniform(size=(count, 28, 28, 1)).astype("float32")
labels = rng.integers(0, 10, count)
print(tf.__version__, keras.__version__, model.evaluate(
    tf.data.Dataset.from_tensor_slices((images, labels)).batch(64), verbose=0))

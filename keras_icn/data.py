"""TFDS pipelines: any TFDS image-classification dataset as (images, labels) batches.

A dataset qualifies when its features are an `image` (tfds Image) and a
`label` (tfds ClassLabel); image shape and class count come from its info.
Images are scaled from raw pixels (0..255) to the model's `value_range`.
"""

import functools
import math
import os
import socket
import urllib.parse

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

# Datasets known to work; any other TFDS dataset with image/label features does too.
KNOWN_DATASETS = ("mnist", "fashion_mnist", "kmnist", "emnist", "cifar10", "cifar100",
                  "svhn_cropped")


def unreachable_hosts(urls, timeout=5.0):
    """The hosts of `urls` that do not accept a TCP connection within `timeout` seconds.

    TFDS itself retries an unreachable download for minutes; this answers in
    seconds (at once where names do not resolve, as on a machine offline).
    """
    unreachable = []
    for url in urls:
        parts = urllib.parse.urlparse(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.hostname in unreachable:
            continue
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout).close()
        except OSError:
            unreachable.append(parts.hostname)
    return unreachable


def dataset_info(name, data_dir=None, download=False):
    """Returns the `tfds.core.DatasetInfo` of an image-classification dataset.

    Args:
        name: TFDS name, e.g. `"mnist"`.
        data_dir: a TFDS data_dir; default `TFDS_DATA_DIR` or `~/tensorflow_datasets`.
        download: if the dataset is not in `data_dir`, download and prepare it
            there. Where its download hosts cannot be reached (no internet),
            this fails within seconds instead of TFDS's minutes of retries.

    Raises:
        ValueError: unknown dataset, not image classification, or not prepared
            and not downloadable; the message says what to pass instead.
    """
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(
            f"Unknown dataset {name!r}. Image-classification datasets keras-icn knows: "
            f"{', '.join(KNOWN_DATASETS)} (or any TFDS dataset with 'image' and 'label' "
            "features)."
        ) from None
    features = builder.info.features
    image = features["image"] if "image" in features else None
    label = features["label"] if "label" in features else None
    if not (isinstance(image, tfds.features.Image) and isinstance(label, tfds.features.ClassLabel)):
        raise ValueError(
            f"Dataset {name!r} is not image classification: keras-icn needs an 'image' "
            f"Image feature and a 'label' ClassLabel feature. Received features: "
            f"{sorted(features.keys())}"
        )
    if not builder.is_prepared():
        where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
        hint = (
            f"Dataset {name!r} (version {builder.info.version}) is not prepared in the TFDS "
            f"data_dir {where!r}. Pass --data_dir=DIR (or data_dir=, or set TFDS_DATA_DIR) "
            "pointing at a TFDS data_dir that holds it"
        )
        if not download:
            raise ValueError(hint + ", or allow TFDS to download it (without --nodownload; "
                             "download=True), which needs internet.")
        unreachable = unreachable_hosts(sorted(builder.url_infos or {}))
        if unreachable:
            raise ValueError(f"{hint}; it cannot be downloaded here: no connection to "
                             f"{', '.join(unreachable)}.")
        try:
            builder.download_and_prepare()
        except Exception as error:  # no network, a blocked host, a failed checksum...
            raise ValueError(f"{hint}; downloading it failed: {type(error).__name__}: "
                             f"{str(error)[:300]}") from error
    return builder.info


def scale_images(images, value_range):
    """Maps raw pixels (0..255, any dtype) to float32 in `value_range`."""
    low, high = value_range
    return low + (high - low) * tf.cast(images, tf.float32) / 255.0


def unscale_images(images, value_range):
    """Maps float images in `value_range` back to raw pixel scale (0..255), float32."""
    low, high = value_range
    return (tf.cast(images, tf.float32) - low) * (255.0 / (high - low))


def training_splits(name, total, train_examples=None, validation_examples=0):
    """Split strings `(train, validation)` carved from the `total` examples of
    dataset `name`'s `train` split (as TFDS writes them).

    Validation is the last `validation_examples` training examples, held out
    for choosing settings (the test split is for the final report only); train
    is the first `train_examples` (default: all the rest). Validation is
    `None` when `validation_examples` is 0.
    """
    if validation_examples < 0 or validation_examples >= total:
        raise ValueError(f"validation_examples must be in [0, {total}) for {name}. "
                         f"Received: validation_examples={validation_examples}")
    available = total - validation_examples
    if train_examples is not None and not 0 < train_examples <= available:
        raise ValueError(
            f"train_examples must be in [1, {available}]: {name} has {total} training "
            f"examples and validation_examples={validation_examples} of them are held out. "
            f"Received: train_examples={train_examples}")
    train = f"train[:{train_examples or available}]"
    validation = f"train[{available}:]" if validation_examples else None
    return train, validation


def class_counts(num_classes, per_class, imbalance_ratio=1.0):
    """How many examples of each class a subset keeps.

    Class k keeps `floor(per_class * imbalance_ratio ** (-k / (num_classes - 1)))`,
    at least 1: `per_class` of every class when the ratio is 1 (balanced), else a
    long tail from `per_class` examples of class 0 down to `per_class /
    imbalance_ratio` of the last class.
    """
    if per_class < 1:
        raise ValueError(f"examples_per_class must be >= 1. Received: {per_class}")
    if not imbalance_ratio >= 1.0:
        raise ValueError(f"imbalance_ratio must be >= 1. Received: {imbalance_ratio}")
    last = max(num_classes - 1, 1)
    return [max(1, math.floor(per_class * imbalance_ratio ** (-k / last) + 1e-9))
            for k in range(num_classes)]


def class_subset(labels, counts):
    """Positions of the first `counts[k]` examples of each class k in `labels`
    (a split's labels in order), sorted: the same subset on every call."""
    labels = np.asarray(labels)
    chosen = []
    for k, count in enumerate(counts):
        positions = np.flatnonzero(labels == k)
        if len(positions) < count:
            raise ValueError(f"Class {k} has {len(positions)} examples in this split; "
                             f"{count} were asked for. Lower examples_per_class.")
        chosen.append(positions[:count])
    return np.sort(np.concatenate(chosen))


@functools.lru_cache(maxsize=32)
def split_labels(name, split, data_dir=None):
    """The labels of a split, in order, without decoding its images; read once
    per process (a pass over the split's records) and returned read-only."""
    dataset = tfds.load(name, split=split, data_dir=data_dir, download=False,
                        shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    labels = np.concatenate([batch["label"] for batch in
                             tfds.as_numpy(dataset.map(lambda e: {"label": e["label"]})
                                           .batch(10_000))])
    labels.flags.writeable = False
    return labels


def select(dataset, positions):
    """The elements of `dataset` at `positions` (sorted ints), in order."""
    keep = np.zeros(int(positions.max()) + 1 if len(positions) else 0, bool)
    keep[positions] = True
    keep = tf.constant(keep)
    return (dataset.enumerate().take(len(keep))
            .filter(lambda index, example: keep[index])
            .map(lambda index, example: example))


def load_split(name, split, data_dir=None, value_range=(0.0, 1.0)):
    """Unbatched `(image, label)` pairs: float32 `(H, W, C)` in `value_range`, int32."""
    dataset = tfds.load(name, split=split, data_dir=data_dir, download=False,
                        as_supervised=True, shuffle_files=False)
    return dataset.map(lambda image, label: (scale_images(image, value_range),
                                             tf.cast(label, tf.int32)),
                       num_parallel_calls=tf.data.AUTOTUNE)


def split_arrays(name, split, data_dir=None, value_range=(0.0, 1.0)):
    """All of a split as numpy `(images, labels)`, images in `value_range`."""
    batches = list(load_split(name, split, data_dir, value_range).batch(10_000))
    return (np.concatenate([b[0].numpy() for b in batches]),
            np.concatenate([b[1].numpy() for b in batches]))


def crop_and_flip(value_range, padding=4):
    """The standard CIFAR augmentation, as an `augmentation` for `train_pipeline`.

    Pads an `(H, W, C)` image by `padding` black pixels (`value_range`'s low
    end) on every side, crops a random `(H, W)` window and flips it left-right
    with probability 1/2. Stateless: the result is a function of `seed`.
    """
    low = float(value_range[0])

    def augment(image, seed):
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]],
                        constant_values=low)
        image = tf.image.stateless_random_crop(padded, tf.shape(image), crop_seed)
        return tf.image.stateless_random_flip_left_right(image, flip_seed)

    return augment


def train_pipeline(dataset, batch_size, seed=0, start_epoch=0, epochs=None, augmentation=None):
    """Shuffled, fixed-size batches for epochs `start_epoch` to `epochs - 1`.

    Epoch e's order, and its augmentation, depend only on `(seed, e)`, so a run
    resumed at `start_epoch` sees exactly the batches the uninterrupted run saw.
    Pass `steps_per_epoch` (`examples // batch_size`) to `fit`.

    Args:
        augmentation: None, or `augment(image, seed) -> image` applied to every
            positive (e.g. `crop_and_flip(value_range)`), with an int64 `(2,)`
            seed of its own per epoch and example.
    """
    dataset = dataset.cache()  # one cache, shared by every epoch below

    def epoch_batches(epoch):
        epoch_seed = seed * 1_000_003 + epoch
        shuffled = dataset.shuffle(10_000, seed=epoch_seed)
        if augmentation is not None:
            shuffled = shuffled.enumerate().map(
                lambda index, example: (
                    augmentation(example[0], tf.stack([tf.constant(epoch_seed, tf.int64), index])),
                    example[1]),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return shuffled.batch(batch_size, drop_remainder=True)  # static shapes, for XLA

    epochs = start_epoch + 1 if epochs is None else epochs
    batches = [epoch_batches(epoch) for epoch in range(start_epoch, max(epochs, start_epoch + 1))]
    return functools.reduce(tf.data.Dataset.concatenate, batches).prefetch(tf.data.AUTOTUNE)


def eval_pipeline(dataset, batch_size):
    """Cached `(images, labels, sample_weights)` batches in order, every one
    `batch_size` long (see `full_batches`)."""
    return full_batches(dataset.cache().batch(batch_size), batch_size).prefetch(tf.data.AUTOTUNE)


def full_batches(batches, batch_size):
    """`batches` of `(inputs, labels[, sample_weights])`, each filled up to
    `batch_size` rows, with a sample weight per row: 0 for the filling.

    A short batch (a split's last, usually) is filled with copies of its first
    rows. Under `tf.distribute` a short batch can leave a replica with no
    examples, which TensorFlow 2.21's oneDNN convolutions fail on ("input depth
    must be evenly divisible by filter depth"); full batches give every replica
    its share. Keras' metrics, and `IntrospectiveClassifier.evaluate`, weigh
    each row by its sample weight, so every example counts exactly once, as on
    one device. `predict` returns the filling too: its first N rows are the N
    examples. Every batch has the static size `batch_size` (one XLA program).

    Args:
        batches: a batched `tf.data.Dataset` whose batches hold at most
            `batch_size` rows; inputs and labels may be nested structures.
        batch_size: rows per batch, at least the number of replicas in sync.

    Example:
    ```python
    validation = keras_icn.data.full_batches(validation.batch(128), 128)
    model.fit(train, validation_data=validation)  # under MirroredStrategy too
    ```
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")

    def fill(inputs, labels, weights=None):
        size = tf.shape(tf.nest.flatten(labels)[0])[0]
        check = tf.debugging.assert_less_equal(
            size, batch_size, message=f"full_batches: a batch is longer than {batch_size} rows")
        with tf.control_dependencies([check]):
            rows = tf.concat([tf.range(size), tf.range(batch_size - size) % size], axis=0)

        def take(values):
            values = tf.gather(values, rows)
            return tf.ensure_shape(values, [batch_size] + values.shape[1:])

        real = tf.cast(tf.range(batch_size) < size, tf.float32)
        weights = real if weights is None else take(tf.cast(weights, tf.float32)) * real
        return tf.nest.map_structure(take, inputs), tf.nest.map_structure(take, labels), weights

    return batches.map(fill)

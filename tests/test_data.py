import socket

import numpy as np
import pytest
import tensorflow as tf

from keras_icn import data
from conftest import tfds_data_dir


def test_mnist_info_and_split_come_from_the_prepared_data_dir():
    info = data.dataset_info("mnist", tfds_data_dir())
    assert info.features["image"].shape == (28, 28, 1)
    assert info.features["label"].num_classes == 10
    split = data.load_split("mnist", "train[:64]", tfds_data_dir(), value_range=(-1.0, 1.0))
    images, labels = next(iter(split.batch(64)))
    assert images.dtype.name == "float32" and labels.dtype.name == "int32"
    assert images.numpy().min() == -1.0 and images.numpy().max() == 1.0
    assert set(labels.numpy()) <= set(range(10))


def test_train_pipeline_has_fixed_size_batches():
    split = data.load_split("mnist", "train[:100]", tfds_data_dir())
    batches = list(data.train_pipeline(split, 32, seed=0))
    assert [len(b[0]) for b in batches] == [32, 32, 32]
    evaluation = list(data.eval_pipeline(split, 32))  # every batch whole, the filling weighs 0
    assert [len(b[0]) for b in evaluation] == [32, 32, 32, 32]
    assert [float(tf.reduce_sum(b[2])) for b in evaluation] == [32, 32, 32, 4]
    examples = np.concatenate([b[0].numpy()[b[2].numpy() > 0] for b in evaluation])
    np.testing.assert_array_equal(examples, next(iter(split.batch(100)))[0].numpy())


def test_full_batches_fill_short_batches_with_weightless_copies():
    features = {"x": tf.range(7, dtype=tf.float32)[:, None] * [1.0, -1.0]}
    labels, weights = tf.range(7), tf.constant([1.0, 2.0, 1.0, 1.0, 0.5, 1.0, 3.0])
    batches = list(data.full_batches(
        tf.data.Dataset.from_tensor_slices((features, labels, weights)).batch(3), 3))
    assert all(b[0]["x"].shape == (3, 2) and b[1].shape == (3,) for b in batches)
    np.testing.assert_array_equal(batches[-1][1], [6, 6, 6])  # the last batch, its row repeated
    np.testing.assert_array_equal(np.concatenate([b[2] for b in batches]),
                                  [1, 2, 1, 1, 0.5, 1, 3, 0, 0])  # given weights kept
    single = list(data.full_batches(tf.data.Dataset.range(5).map(lambda i: (i, i)).batch(2), 2))
    np.testing.assert_array_equal(np.concatenate([b[2] for b in single]), [1, 1, 1, 1, 1, 0])
    # A static batch dimension: one XLA program, every replica a share.
    assert data.full_batches(tf.data.Dataset.range(5).map(lambda i: (i, i)).batch(2),
                             2).element_spec[0].shape == (2,)
    with pytest.raises(tf.errors.InvalidArgumentError, match="longer than 2 rows"):
        list(data.full_batches(tf.data.Dataset.range(5).map(lambda i: (i, i)).batch(3), 2))
    with pytest.raises(ValueError, match="batch_size must be >= 1. Received: batch_size=0"):
        data.full_batches(tf.data.Dataset.range(5).map(lambda i: (i, i)).batch(3), 0)


def test_validation_is_held_out_from_the_end_of_train():
    info = data.dataset_info("mnist", tfds_data_dir())
    total = info.splits["train"].num_examples
    assert data.training_splits("mnist", total) == ("train[:60000]", None)
    assert data.training_splits("mnist", total, None, 10_000) == ("train[:50000]",
                                                                   "train[50000:]")
    assert data.training_splits("mnist", total, 2000, 10_000) == ("train[:2000]",
                                                                  "train[50000:]")
    with pytest.raises(ValueError, match=r"train_examples must be in \[1, 50000\].*"
                                         r"Received: train_examples=55000"):
        data.training_splits("mnist", total, 55_000, 10_000)
    with pytest.raises(ValueError, match=r"validation_examples must be in \[0, 60000\)"):
        data.training_splits("mnist", total, None, 60_000)


def test_scale_images_maps_raw_pixels_to_the_value_range():
    scaled = data.scale_images(np.array([0, 255, 51], np.uint8), (-1.0, 1.0)).numpy()
    np.testing.assert_allclose(scaled, [-1.0, 1.0, -0.6], atol=1e-6)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="Unknown dataset 'mnistt'.*mnist, fashion_mnist"):
        data.dataset_info("mnistt")


def test_dataset_missing_from_data_dir_says_data_dir(tmp_path):
    with pytest.raises(ValueError, match=r"not prepared.*--data_dir"):
        data.dataset_info("fashion_mnist", str(tmp_path))
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_a_download_without_internet_fails_in_seconds_naming_the_host(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(data, "unreachable_hosts", lambda urls: asked.extend(urls) or ["nowhere"])
    with pytest.raises(ValueError, match=r"not prepared.*TFDS_DATA_DIR.*cannot be downloaded "
                                         r"here: no connection to nowhere\."):
        data.dataset_info("mnist", str(tmp_path), download=True)
    assert asked and all(url.startswith("https://storage.googleapis.com/") for url in asked)
    assert not any(tmp_path.iterdir())


def test_unreachable_hosts_are_those_refusing_a_connection():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        open_port = server.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]  # bound, never listening: refused
        urls = [f"http://127.0.0.1:{open_port}/a", f"http://localhost:{closed_port}/b"]
        assert data.unreachable_hosts(urls, timeout=2.0) == ["localhost"]


def test_non_image_classification_dataset_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"not image classification.*\['label', 'text'\]"):
        data.dataset_info("imdb_reviews", str(tmp_path))


def test_crop_and_flip_is_a_padded_shift_or_mirror_decided_by_the_seed():
    image = np.arange(8 * 8 * 3, dtype="float32").reshape(8, 8, 3) / 200 + 0.5
    augment = data.crop_and_flip(value_range=(-1.0, 1.0), padding=2)
    padded = np.pad(image, [(2, 2), (2, 2), (0, 0)], constant_values=-1.0)  # black is low
    windows = [padded[i:i + 8, j:j + 8] for i in range(5) for j in range(5)]
    windows += [w[:, ::-1] for w in windows]
    seen = set()
    for seed in range(40):
        out = augment(tf.constant(image), tf.constant([seed, 7], tf.int64)).numpy()
        again = augment(tf.constant(image), tf.constant([seed, 7], tf.int64)).numpy()
        np.testing.assert_array_equal(out, again)
        matches = [k for k, w in enumerate(windows) if np.array_equal(out, w)]
        assert matches, "not a padded crop, or its mirror"
        seen.add(matches[0])
    assert len(seen) > 10  # the seed moves the window and the flip


def test_augmented_pipeline_depends_only_on_seed_and_epoch():
    split = data.load_split("mnist", "train[:96]", tfds_data_dir())
    augment = data.crop_and_flip((0.0, 1.0))

    def batches(**kwargs):
        return [b[0].numpy() for b in data.train_pipeline(split, 32, seed=1, augmentation=augment,
                                                          **kwargs)]

    two_epochs = batches(epochs=2)
    assert len(two_epochs) == 6
    resumed = batches(start_epoch=1, epochs=2)
    for a, b in zip(two_epochs[3:], resumed):
        np.testing.assert_array_equal(a, b)  # a resumed run sees the same augmented images
    plain = [b[0].numpy() for b in data.train_pipeline(split, 32, seed=1, epochs=2)]
    assert not np.array_equal(two_epochs[0], plain[0])
    # The same examples in the same order, only moved: the sums of labels agree.
    labels = [b[1].numpy() for b in data.train_pipeline(split, 32, seed=1, epochs=2)]
    augmented_labels = [b[1].numpy() for b in data.train_pipeline(split, 32, seed=1, epochs=2,
                                                                  augmentation=augment)]
    for a, b in zip(labels, augmented_labels):
        np.testing.assert_array_equal(a, b)


def test_long_tailed_class_counts_match_hand_computed_values():
    # floor(500 * 100^(-k/9)): 500, 299.7, 179.7, 107.7, 64.6, 38.7, 23.2, 13.9, 8.3, 5
    assert data.class_counts(10, 500, 100) == [500, 299, 179, 107, 64, 38, 23, 13, 8, 5]
    # floor(50 * 10^(-k/9)): 50, 38.7, 29.9, 23.2, 17.96, 13.9, 10.8, 8.3, 6.5, 5
    assert data.class_counts(10, 50, 10) == [50, 38, 29, 23, 17, 13, 10, 8, 6, 5]
    assert data.class_counts(3, 7) == [7, 7, 7]  # ratio 1: balanced
    with pytest.raises(ValueError, match="imbalance_ratio must be >= 1. Received: 0.5"):
        data.class_counts(10, 5, 0.5)


def test_class_subset_takes_the_first_examples_of_each_class_in_order():
    labels = [2, 0, 1, 0, 2, 2, 1, 0]
    np.testing.assert_array_equal(data.class_subset(labels, [2, 1, 2]), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(data.class_subset(labels, [1, 2, 1]), [0, 1, 2, 6])
    with pytest.raises(ValueError, match="Class 1 has 2 examples in this split; 3 were asked"):
        data.class_subset(labels, [1, 3, 1])
    dataset = tf.data.Dataset.from_tensor_slices((tf.range(8), labels))
    selected = [(int(i), int(y)) for i, y in data.select(dataset, data.class_subset(labels, [1, 2, 1]))]
    assert selected == [(0, 2), (1, 0), (2, 1), (6, 1)]


def test_split_labels_are_the_splits_labels_in_order():
    labels = data.split_labels("mnist", "train[:300]", tfds_data_dir())
    expected = [int(y) for _, y in data.load_split("mnist", "train[:300]", tfds_data_dir())]
    assert labels.tolist() == expected
    # Read once per process: the second call is the same read-only array.
    assert data.split_labels("mnist", "train[:300]", tfds_data_dir()) is labels
    assert not labels.flags.writeable

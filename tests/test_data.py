import numpy as np
import pytest

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
    assert [len(b[0]) for b in data.eval_pipeline(split, 32)] == [32, 32, 32, 4]


def test_validation_is_held_out_from_the_end_of_train():
    info = data.dataset_info("mnist", tfds_data_dir())
    assert data.training_splits(info) == ("train[:60000]", None)
    assert data.training_splits(info, None, 10_000) == ("train[:50000]", "train[50000:]")
    assert data.training_splits(info, 2000, 10_000) == ("train[:2000]", "train[50000:]")
    with pytest.raises(ValueError, match=r"train_examples must be in \[1, 50000\].*"
                                         r"Received: train_examples=55000"):
        data.training_splits(info, 55_000, 10_000)
    with pytest.raises(ValueError, match=r"validation_examples must be in \[0, 60000\)"):
        data.training_splits(info, None, 60_000)


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


def test_non_image_classification_dataset_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"not image classification.*\['label', 'text'\]"):
        data.dataset_info("imdb_reviews", str(tmp_path))

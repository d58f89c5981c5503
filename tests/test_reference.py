"""The reference classifier: trained once per dataset, cached, and a feature space."""

import os

import numpy as np

from conftest import tfds_data_dir
from keras_icn import reference


def test_reference_classifier_is_trained_once_and_cached(tmp_path):
    directory = str(tmp_path / "reference")
    model = reference.load_or_train("mnist", tfds_data_dir(), directory, epochs=1,
                                    train_examples=512)
    assert os.path.exists(os.path.join(directory, "mnist.keras"))
    assert not [n for n in os.listdir(directory) if n.startswith(".tmp")]
    images = np.random.default_rng(0).uniform(0, 1, (7, 28, 28, 1)).astype("float32")
    features = reference.features(model, images)
    assert features.shape == (7, 128) and np.all(np.isfinite(features))
    # Cached: loaded, not retrained (the same weights give the same features).
    again = reference.load_or_train("mnist", tfds_data_dir(), directory, epochs=1,
                                    train_examples=512)
    np.testing.assert_allclose(reference.features(again, images), features, rtol=1e-5)
    # Images in another value range are mapped to the reference's own.
    np.testing.assert_allclose(reference.features(model, images * 2 - 1, (-1.0, 1.0)),
                               features, rtol=1e-4, atol=1e-5)

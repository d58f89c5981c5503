import keras
import numpy as np
import pytest

from keras_icn import losses


def softplus(x):
    return np.log1p(np.exp(x))


def test_introspective_loss_matches_hand_computation():
    positive_logits = np.array([[1.0, -2.0], [0.5, 3.0]], "float32")
    labels = np.array([0, 1])
    negative_logits = np.array([[0.2, 0.1], [-1.0, 4.0], [2.0, 0.0]], "float32")
    negative_labels = np.array([1, 0, 0])
    expected = (softplus(-1.0) + softplus(-3.0)) / 2 + (softplus(0.1) + softplus(-1.0) + softplus(2.0)) / 3
    value = losses.introspective_loss(positive_logits, labels, negative_logits, negative_labels)
    np.testing.assert_allclose(float(value), expected, rtol=1e-6)


def test_classification_loss_is_keras_cross_entropy_and_zero_for_one_logit():
    logits = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    labels = np.array([0, 2, 1, 1, 0])
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    np.testing.assert_allclose(float(losses.classification_loss(logits, labels)), float(expected),
                               rtol=1e-6)
    assert float(losses.classification_loss(logits[:, :1], np.zeros(5))) == 0.0


def test_label_smoothing_moves_that_much_probability_evenly_onto_every_class():
    logits = np.random.default_rng(1).normal(size=(4, 5)).astype("float32")
    labels = np.array([0, 4, 2, 2])
    expected = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2)(
        np.eye(5)[labels], logits)
    np.testing.assert_allclose(float(losses.classification_loss(logits, labels, 0.2)),
                               float(expected), rtol=1e-6)
    assert float(losses.classification_loss(logits, labels, 0.2)) != pytest.approx(
        float(losses.classification_loss(logits, labels)))

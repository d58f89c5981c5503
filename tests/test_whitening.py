import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_icn import networks, whitening


def correlated_images(count=64, seed=0, size=8):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(count, size, size, 1))
    # Channels that share most of their signal: far from white.
    return np.concatenate([base, base + 0.1 * rng.normal(size=base.shape),
                           3 * base + 0.5 * rng.normal(size=base.shape)], -1)


def test_adapted_filters_whiten_the_patches_and_centre_them():
    images = correlated_images()
    layer = whitening.PatchWhitening(2, epsilon=1e-8)
    layer.adapt(images)
    features = layer(images.astype("float32")).numpy().reshape(-1, 24)
    half = features[:, :12]  # the other half is its negation
    np.testing.assert_allclose(features[:, 12:], -half, atol=1e-5)
    np.testing.assert_allclose(half.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(np.cov(half.T, bias=True), np.eye(12), atol=2e-3)


def test_a_network_is_adapted_from_batches_and_reloads_with_its_filters(tmp_path):
    network = networks.build("fast_cnn8", (16, 16, 3), 2)
    images = correlated_images(count=40, size=16).astype("float32")
    batches = tf.data.Dataset.from_tensor_slices((images, np.zeros(40, "int32"))).batch(16)
    before = network.get_layer("whiten").kernel.numpy()
    assert whitening.adapt_network(network, batches, max_batches=2) == 1
    adapted = network.get_layer("whiten").kernel.numpy()
    assert not np.allclose(adapted, before)
    expected = whitening.PatchWhitening(2)
    expected.adapt(images[:32])  # two batches of 16
    np.testing.assert_allclose(adapted, expected.kernel.numpy(), rtol=1e-5, atol=1e-5)
    assert not network.get_layer("whiten").kernel.trainable
    network.save(tmp_path / "n.keras")
    reloaded = keras.models.load_model(tmp_path / "n.keras")
    np.testing.assert_allclose(reloaded(images), network(images), atol=1e-5)
    assert whitening.adapt_network(networks.build("mnist_cnn", (8, 8, 1), 2), batches) == 0


def test_bad_images_are_refused():
    with pytest.raises(ValueError, match=r"adapt takes images \(N, H, W, C\).*shape \(4, 8\)"):
        whitening.PatchWhitening(2).adapt(np.zeros((4, 8)))
    with pytest.raises(ValueError, match="kernel_size must be an int >= 1. Received: kernel_size=0"):
        whitening.PatchWhitening(0)

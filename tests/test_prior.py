import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import make_dataset, make_images, make_model
from keras_icn.prior import PixelPrior


def test_running_moments_equal_the_moments_of_all_batches():
    data = np.random.default_rng(0).uniform(0, 1, (100, 3, 3, 1)).astype("float32")
    prior = PixelPrior((3, 3, 1))
    for batch in np.split(data, [10, 40, 45]):
        prior.update(batch)
    assert float(prior.count.numpy()) == 100
    np.testing.assert_allclose(prior.mean.numpy(), data.mean(0), atol=1e-6)
    np.testing.assert_allclose(prior.variance.numpy(), data.var(0), atol=1e-6)


def test_adapt_reads_a_dataset_of_image_label_batches():
    data = np.random.default_rng(1).normal(0.5, 0.1, (64, 2, 2, 1)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((data, np.zeros(64))).batch(16)
    prior = PixelPrior((2, 2, 1))
    prior.adapt(dataset, max_batches=2)
    np.testing.assert_allclose(prior.mean.numpy(), data[:32].mean(0), atol=1e-6)


@pytest.mark.parametrize("kind", ["gaussian", "uniform"])
def test_samples_are_in_range_and_seeded(kind):
    prior = PixelPrior((4, 4, 1), kind=kind, value_range=(-1.0, 1.0))
    prior.update(np.random.default_rng(2).normal(0.8, 1.0, (32, 4, 4, 1)).astype("float32"))
    samples = prior.sample(256, tf.constant([3, 4])).numpy()
    assert samples.shape == (256, 4, 4, 1)
    assert samples.min() >= -1.0 and samples.max() <= 1.0
    np.testing.assert_array_equal(samples, prior.sample(256, tf.constant([3, 4])).numpy())
    if kind == "gaussian":  # follows the data's mean, not the range's middle
        assert abs(samples.mean() - 0.45) < 0.1
    else:
        assert abs(samples.mean()) < 0.1


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="prior='laplace'"):
        PixelPrior((2, 2, 1), kind="laplace")


def test_pca_prior_keeps_pixel_variances_and_draws_along_the_components():
    # Images that vary along one direction (plus a little pixel noise): the first
    # component is that direction, and draws vary along it like the data.
    rng = np.random.default_rng(3)
    direction = rng.normal(size=16)
    direction /= np.linalg.norm(direction)
    data = (0.5 + rng.normal(0, 0.2, (2000, 1)) * direction
            + rng.normal(0, 0.01, (2000, 16))).astype("float32").reshape(2000, 4, 4, 1)
    prior = PixelPrior((4, 4, 1), kind="pca", value_range=(-10.0, 10.0))
    before = prior.sample(8, tf.constant([1, 2])).numpy()  # not adapted: per-pixel Gaussian
    assert np.all(np.isfinite(before))
    prior.adapt(tf.data.Dataset.from_tensor_slices(data).batch(500))
    assert abs(abs(prior.components.numpy()[0] @ direction) - 1.0) < 1e-3
    assert prior.component_variances.numpy()[0] == pytest.approx(0.04, rel=0.1)
    samples = prior.sample(4000, tf.constant([5, 6])).numpy().reshape(4000, 16)
    # The per-pixel variances are the data's, and so is the correlation structure:
    # almost all of the samples' variance lies along the direction.
    np.testing.assert_allclose(samples.var(0), data.reshape(2000, 16).var(0), rtol=0.15,
                               atol=1e-4)
    along = (samples - samples.mean(0)) @ direction
    assert along.var() / samples.var(0).sum() > 0.9
    # A per-pixel Gaussian with the same variances has no such structure: along
    # the direction it has sum(d_i^2 v_i) of sum(v_i), here about a quarter.
    gaussian = PixelPrior((4, 4, 1), value_range=(-10.0, 10.0))
    gaussian.adapt(data)
    plain = gaussian.sample(4000, tf.constant([5, 6])).numpy().reshape(4000, 16)
    variances = gaussian.variance.numpy().reshape(16)
    expected = (direction ** 2 @ variances) / variances.sum()
    assert ((plain - plain.mean(0)) @ direction).var() / plain.var(0).sum() == pytest.approx(
        expected, rel=0.1)
    assert expected < 0.5
    # Per-sample seeds (the serving signature's) work too.
    seeds = tf.constant([[1, 0], [2, 0]], tf.int64)
    np.testing.assert_array_equal(prior.sample(2, seeds).numpy()[1],
                                  prior.sample(2, tf.constant([[7, 0], [2, 0]], tf.int64))[1])


def test_a_model_with_the_pca_prior_saves_loads_and_synthesizes(tmp_path):
    model = make_model(prior="pca")
    images, _ = make_images(256)
    model.adapt(images)
    assert np.abs(model.prior.components.numpy()).sum() > 0
    model.fit(make_dataset(), epochs=1, shuffle=False, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.prior.components.numpy(),
                                  model.prior.components.numpy())
    np.testing.assert_allclose(loaded.synthesize([0, 1], seed=3), model.synthesize([0, 1], seed=3),
                               atol=1e-5)


@pytest.mark.parametrize("kind", ["gaussian", "pca"])
def test_covariance_times_is_the_covariance_of_gaussian_noise(kind):
    # C x against the dense C built from the prior's weights, and the draws of
    # gaussian_noise have covariance C.
    rng = np.random.default_rng(4)
    mixing = rng.normal(size=(6, 6))
    data = (rng.normal(size=(3000, 6)) @ mixing * 0.1).astype("float32").reshape(3000, 3, 2)
    prior = PixelPrior((3, 2), kind=kind, value_range=None)
    prior.adapt(data)
    variance = prior.variance.numpy().reshape(6)
    if kind == "pca":
        components = prior.components.numpy()[:, :6]
        explained = prior.component_variances.numpy() @ components ** 2
        covariance = (components.T * prior.component_variances.numpy()) @ components
        covariance += np.diag(np.maximum(variance - explained, 0.0))
        # Every feature keeps its variance (up to the components' n - 1 against n).
        np.testing.assert_allclose(np.diag(covariance), variance, rtol=1e-3)
    else:
        covariance = np.diag(variance)
    values = rng.normal(size=(5, 3, 2)).astype("float32")
    np.testing.assert_allclose(prior.covariance_times(values).numpy().reshape(5, 6),
                               values.reshape(5, 6) @ covariance, rtol=1e-4, atol=1e-6)
    noise = prior.gaussian_noise(20000, tf.constant([8, 9])).numpy().reshape(20000, 6)
    np.testing.assert_allclose(np.cov(noise, rowvar=False), covariance, atol=0.05 * variance.max())
    # sample() is the clipped mean plus the same draws.
    np.testing.assert_allclose(prior.sample(4, tf.constant([8, 9])).numpy(),
                               prior.mean.numpy() + noise[:4].reshape(4, 3, 2), rtol=1e-6)

import numpy as np
import pytest
import tensorflow as tf

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

"""Sample-quality measures against cases whose answers are known by hand."""

import numpy as np
import pytest

from keras_icn import quality


def gaussian(n, d, shift=0.0, scale=1.0, seed=0):
    return np.random.default_rng(seed).normal(shift, scale, (n, d))


def test_frechet_distance_of_identical_and_shifted_sets():
    real = gaussian(500, 4)
    assert quality.frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    # The same set shifted by 2 in every one of 4 dimensions: ||mu||^2 = 4 * 2^2 = 16,
    # and equal covariances add nothing.
    assert quality.frechet_distance(real + 2.0, real) == pytest.approx(16.0, rel=1e-6)
    # 1-D Gaussians: (mu1 - mu2)^2 + (s1 - s2)^2 = 1 + 1 = 2, up to sampling error.
    wide = quality.frechet_distance(gaussian(20_000, 1, 1.0, 2.0, seed=1), gaussian(20_000, 1))
    assert wide == pytest.approx(2.0, rel=0.05)


def test_diversity_of_copies_is_zero_and_of_the_same_distribution_is_one():
    real = gaussian(400, 8)
    copies = np.repeat(real[:1], 50, axis=0)
    assert quality.diversity(copies, real) == 0.0
    assert quality.diversity(gaussian(400, 8, seed=1), real) == pytest.approx(1.0, abs=0.05)
    assert quality.diversity(gaussian(400, 8, scale=0.5, seed=1), real) == pytest.approx(
        0.5, abs=0.05)
    # Two points at distance 5: the mean over distinct pairs is 5.
    assert quality.mean_pairwise_distance([[0.0, 0.0], [3.0, 4.0]]) == pytest.approx(5.0)


def test_class_diversity_averages_the_classes_with_two_samples_and_two_real_images():
    # Images (2x1x1): class 0's samples are 2 apart, its real images 4 (0.5); class
    # 1's samples 3 apart, its real images 1 (3.0); class 2 has one sample, class 3
    # one real image: both left out.
    samples = np.array([[0, 0], [2, 0], [0, 0], [0, 3], [9, 9], [1, 1], [5, 5]],
                       float).reshape(-1, 2, 1, 1)
    labels = np.array([0, 0, 1, 1, 2, 3, 3])
    real = np.array([[0, 0], [0, 4], [1, 0], [1, 1], [7, 7], [8, 8], [3, 3]], float)
    real_labels = np.array([0, 0, 1, 1, 2, 2, 3])
    assert quality.class_diversity(samples, labels, real, real_labels) == pytest.approx(1.75)
    assert quality.class_diversity(samples[4:5], labels[4:5], real, real_labels) is None


def test_precision_and_recall_of_identical_disjoint_and_collapsed_sets():
    real = gaussian(300, 2)
    assert quality.precision_recall(real, real) == (1.0, 1.0)
    assert quality.precision_recall(real + 100.0, real) == (0.0, 0.0)  # far away
    # All samples near the real mode: precise, but they cover few real images.
    collapsed = gaussian(300, 2, scale=0.05, seed=1)
    precision, recall = quality.precision_recall(collapsed, real)
    assert precision == 1.0 and recall < 0.2
    with pytest.raises(ValueError, match="k must be in"):
        quality.precision_recall(real[:3], real, k=3)


def test_nearest_distances_find_copies_of_training_images():
    training = gaussian(100, 5)
    samples = np.concatenate([training[[3, 7]], training[:2] + [[3.0, 4.0, 0, 0, 0]]])
    distances = quality.nearest_distances(samples, training)
    np.testing.assert_allclose(distances[:2], 0.0, atol=1e-6)
    assert np.all(distances[2:] > 0.0) and np.all(distances[2:] <= 5.0 + 1e-9)


def test_bad_shapes_are_refused_with_the_shape():
    with pytest.raises(ValueError, match=r"samples must be \(n, d\) features with n >= 2. "
                                         r"Received shape \(5,\)"):
        quality.frechet_distance(np.zeros(5), np.zeros((5, 2)))


def test_synthesis_quality_per_class_and_overall():
    # Two classes far apart; "samples" are fresh draws of each class's Gaussian,
    # except that class 1's are 40 copies of one training point.
    real = np.concatenate([gaussian(200, 3, seed=1), gaussian(200, 3, shift=50.0, seed=2)])
    real_labels = np.repeat([0, 1], 200)
    training = np.concatenate([gaussian(300, 3, seed=3), gaussian(300, 3, shift=50.0, seed=4)])
    samples = np.concatenate([gaussian(40, 3, seed=5), np.repeat(training[300:301], 40, 0)])
    sample_labels = np.repeat([0, 1], 40)
    result = quality.synthesis_quality(samples, sample_labels, real, real_labels, training)
    fresh, copies = result["per_class"][0], result["per_class"][1]
    assert fresh["diversity"] == pytest.approx(1.0, abs=0.15)
    assert fresh["nearest_training_ratio"] == pytest.approx(1.0, abs=0.3)
    assert fresh["precision"] > 0.8 and fresh["recall"] > 0.5
    assert copies["diversity"] == pytest.approx(0.0, abs=1e-5)
    assert copies["nearest_training_ratio"] == pytest.approx(0.0, abs=1e-5)
    assert copies["recall"] < 0.1
    # Overall diversity is the mean of the classes'.
    assert result["overall"]["diversity"] == pytest.approx(fresh["diversity"] / 2)
    # The first 40 real images of each class standing in for the samples are the
    # very images the overall measures compare with: a perfect score.
    first = np.r_[0:40, 200:240]
    same = quality.synthesis_quality(real[first], real_labels[first], real, real_labels, training)
    assert (same["overall"]["precision"], same["overall"]["recall"]) == (1.0, 1.0)
    assert same["overall"]["frechet_distance"] == pytest.approx(0.0, abs=1e-6)
    assert same["per_class"][0]["frechet_distance"] < fresh["frechet_distance"] + 0.5
    with pytest.raises(ValueError, match="real has 2 images of class 1"):
        quality.synthesis_quality(samples, sample_labels, real[:202], real_labels[:202], training)

"""How good synthesized samples are, measured in a feature space.

Each function takes feature vectors, `(n, d)` float arrays: the activations of
a reference classifier for synthesized and for real images (never the model
under test, which would grade its own samples). They are plain numpy and scipy.

- `frechet_distance`: fidelity, the Fréchet distance between Gaussians fitted
  to the two sets (FID's formula); 0 for identical statistics.
- `diversity`: mean pairwise distance within the samples divided by the same
  within real images; 1 is as varied as real data, 0 is one image repeated.
- `precision_recall`: k-nearest-neighbour manifolds (Kynkäänniemi et al.,
  "Improved Precision and Recall Metric for Assessing Generative Models",
  2019): precision, the fraction of samples inside the real manifold; recall
  (coverage), the fraction of real images inside the samples' manifold.
- `nearest_distances`: each sample's distance to its nearest training image,
  to check for memorisation.
"""

import numpy as np
from scipy import linalg


def _features(name, value):
    value = np.asarray(value, np.float64)
    if value.ndim != 2 or len(value) < 2:
        raise ValueError(f"{name} must be (n, d) features with n >= 2. Received shape "
                         f"{value.shape}")
    return value


def _pairwise(a, b):
    """Euclidean distances `(len(a), len(b))`."""
    squared = (np.sum(a * a, 1)[:, None] + np.sum(b * b, 1)[None, :] - 2.0 * a @ b.T)
    return np.sqrt(np.maximum(squared, 0.0))


def frechet_distance(samples, real):
    """||mu_s - mu_r||^2 + Tr(C_s + C_r - 2 (C_s C_r)^(1/2))."""
    samples, real = _features("samples", samples), _features("real", real)
    mean_difference = samples.mean(0) - real.mean(0)
    cov_s, cov_r = np.cov(samples, rowvar=False), np.cov(real, rowvar=False)
    root = linalg.sqrtm(np.atleast_2d(cov_s) @ np.atleast_2d(cov_r))
    root = root.real  # numerical noise can leave a tiny imaginary part
    value = mean_difference @ mean_difference + np.trace(cov_s + cov_r - 2.0 * root)
    return float(max(value, 0.0))


def mean_pairwise_distance(features):
    """Mean Euclidean distance over the distinct pairs of a set."""
    features = _features("features", features)
    distances = _pairwise(features, features)
    n = len(features)
    return float(distances.sum() / (n * (n - 1)))


def diversity(samples, real):
    """Mean pairwise distance of `samples` over that of `real` (of one class)."""
    return mean_pairwise_distance(samples) / mean_pairwise_distance(real)


def precision_recall(samples, real, k=3):
    """Kynkäänniemi et al.'s precision and recall with `k`-NN balls: `(precision, recall)`.

    A point is inside a set's manifold when it lies within the distance from
    some member of the set to that member's k-th nearest neighbour in the set.
    """
    samples, real = _features("samples", samples), _features("real", real)
    if not 1 <= k < min(len(samples), len(real)):
        raise ValueError(f"k must be in [1, {min(len(samples), len(real)) - 1}]. Received: {k}")

    def radii(points):  # distance to the k-th nearest other point
        return np.sort(_pairwise(points, points), axis=1)[:, k]

    def inside(points, support):
        return np.any(_pairwise(points, support) <= radii(support)[None, :], axis=1)

    return float(np.mean(inside(samples, real))), float(np.mean(inside(real, samples)))


def nearest_distances(samples, training):
    """Each sample's distance to its nearest training image, `(len(samples),)`."""
    samples, training = _features("samples", samples), _features("training", training)
    return _pairwise(samples, training).min(axis=1)

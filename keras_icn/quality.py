"""How good synthesized samples are, measured in a feature space.

Each function takes feature vectors, `(n, d)` float arrays: the activations of
a reference classifier for synthesized and for real images (never the model
under test, which would grade its own samples). They are plain numpy.

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
- `synthesis_quality`: all of them, per class and overall.
"""

import numpy as np


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
    # Tr((C_s C_r)^(1/2)) is the sum of the square roots of C_s C_r's eigenvalues,
    # which are real and >= 0 (a product of two covariances); this stays exact
    # where few samples make the covariances singular and sqrtm would not.
    eigenvalues = np.linalg.eigvals(np.atleast_2d(cov_s) @ np.atleast_2d(cov_r)).real
    trace_root = np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None)))
    value = (mean_difference @ mean_difference + np.trace(np.atleast_2d(cov_s + cov_r))
             - 2.0 * trace_root)
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


def class_diversity(samples, labels, real, real_labels):
    """`diversity` of each class, averaged over the classes with at least 2
    samples and 2 real images; None if there is no such class.

    Images or features, flattened per example; labels are 1-D."""
    samples = np.reshape(samples, (len(samples), -1))
    real = np.reshape(real, (len(real), -1))
    labels, real_labels = np.asarray(labels), np.asarray(real_labels)
    classes = [k for k in np.unique(labels)
               if np.sum(labels == k) >= 2 and np.sum(real_labels == k) >= 2]
    if not classes:
        return None
    return float(np.mean([diversity(samples[labels == k], real[real_labels == k])
                          for k in classes]))


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


def nearest_distances(samples, training, chunk=256):
    """Each sample's distance to its nearest training image, `(len(samples),)`.

    Computed `chunk` samples at a time, so a large training set fits in memory.
    """
    samples, training = _features("samples", samples), _features("training", training)
    return np.concatenate([_pairwise(samples[i:i + chunk], training).min(axis=1)
                           for i in range(0, len(samples), chunk)])


def _measures(samples, real, held_out_distances, training, k):
    precision, recall = precision_recall(samples, real, k)
    return {"frechet_distance": frechet_distance(samples, real),
            "diversity": diversity(samples, real),
            "precision": precision, "recall": recall,
            # ~1 for new images like the real ones; well below 1: copies of training images.
            "nearest_training_ratio": float(np.median(nearest_distances(samples, training))
                                            / np.median(held_out_distances))}


def synthesis_quality(samples, sample_labels, real, real_labels, training, k=3):
    """Every measure above, per class and overall, for features of labelled sets.

    Args:
        samples, sample_labels: features of synthesized images and their
            requested classes.
        real, real_labels: features of real images not used in training (the
            test split), the reference for fidelity, diversity and coverage.
        training: features of training images, for the memorisation check.
        k: the neighbourhood size of `precision_recall`.

    Returns:
        `{"per_class": {k: measures}, "overall": measures}`, each measures a
        dict: frechet_distance, diversity, precision, recall, and
        nearest_training_ratio (the median distance from a sample to its
        nearest training image over the same for a real image). Overall
        diversity is the mean of the classes'; the other overall measures
        compare all samples with an equally large, class-stratified part of `real`.
    """
    samples, real, training = (_features(n, v) for n, v in
                               (("samples", samples), ("real", real), ("training", training)))
    sample_labels, real_labels = np.asarray(sample_labels), np.asarray(real_labels)
    held_out = nearest_distances(real, training)
    per_class, matched = {}, []
    for label in np.unique(sample_labels):
        mine, theirs = sample_labels == label, np.flatnonzero(real_labels == label)
        if len(theirs) <= k:
            raise ValueError(f"real has {len(theirs)} images of class {label}; the measures "
                             f"need more than k={k}.")
        per_class[int(label)] = _measures(samples[mine], real[theirs], held_out[theirs],
                                          training, k)
        matched.append(theirs[:np.sum(mine)])
    matched = np.concatenate(matched)
    overall = _measures(samples, real[matched], held_out[matched], training, k)
    overall["diversity"] = float(np.mean([m["diversity"] for m in per_class.values()]))
    return {"per_class": per_class, "overall": overall}

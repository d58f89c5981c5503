"""Evaluation measures: calibration, out-of-distribution detection, FGSM robustness.

Pure functions of arrays and a network, used by `tools/evaluate.py`.
"""

import numpy as np
import tensorflow as tf
from keras import ops


def expected_calibration_error(probabilities, labels, num_bins=15):
    """ECE with `num_bins` equal-width confidence bins.

    Sum over bins of (fraction of samples in the bin) * |accuracy - mean
    confidence| in the bin, where confidence is the top softmax probability.
    """
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    # Bin b holds confidences in (b/num_bins, (b+1)/num_bins]; 0 goes in bin 0.
    bins = np.clip(np.ceil(confidence * num_bins).astype(int) - 1, 0, num_bins - 1)
    error = 0.0
    for b in range(num_bins):
        members = bins == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def auroc(positive_scores, negative_scores):
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count half."""
    positive = np.asarray(positive_scores, np.float64)
    negative = np.asarray(negative_scores, np.float64)
    scores = np.concatenate([positive, negative])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # Average ranks (1-based) over tied groups.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(scores)]])
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2
    rank_sum = ranks[: len(positive)].sum()
    return float((rank_sum - len(positive) * (len(positive) + 1) / 2)
                 / (len(positive) * len(negative)))


def ood_scores(logits):
    """Scores that are high for in-distribution inputs: max softmax probability and
    the log-sum-exp of the logits."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_normalizer = np.log(np.exp(shifted).sum(axis=1))
    return {"max_softmax": np.exp(-log_normalizer),
            "logsumexp": log_normalizer + logits.max(axis=1)}


def fgsm(network, images, labels, epsilon, value_range):
    """Fast gradient sign adversarial examples: x + epsilon * sign(grad_x CE), clipped.

    `epsilon` is in the units of `value_range` (0.1 on [0, 1] is 25.5 gray levels).
    """
    images = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(images)
        loss = ops.sparse_categorical_crossentropy(labels, network(images, training=False),
                                                   from_logits=True)
    gradient = tape.gradient(loss, images)
    low, high = value_range
    return ops.clip(images + epsilon * tf.sign(gradient), low, high)

"""Saying "unknown": a score per input and a calibrated threshold.

An introspective classifier spends its training rejecting inputs of no class,
and the log-sum-exp of its logits, log sum_k exp f_k(x), is its own measure of
how much an input looks like any class (the unnormalised log-density of the
energy-based reading of a classifier). The unknown score is its negative:

    unknown_score(x) = -logsumexp_k f_k(x)      (default, `"logsumexp"`)
                     = -max_k f_k(x)            (`"max_logit"`, Vaze et al. 2022)
                     = -max_k softmax(f(x))_k   (`"max_softmax"`; with one logit,
                                                 -sigmoid(f(x)), its class probability)

An input is unknown when its score exceeds the threshold, which `calibrate`
sets from held-out inputs of the known classes so that a chosen share of them
(the true-positive rate, 95% by default) is kept. An input with a non-finite
value is always unknown, with score +inf and class -1. The model
(`IntrospectiveClassifier.predict_open_set`) and the exported `classify`
signature both call `decide`, so they agree.
"""

import numpy as np
import tensorflow as tf

SCORES = ("logsumexp", "max_logit", "max_softmax")


def check_score(score):
    if score not in SCORES:
        raise ValueError(f"unknown_score must be one of {SCORES}. Received: {score!r}")
    return score


def unknown_score(logits, score="logsumexp"):
    """`(batch,)` float32: high for inputs unlike every class."""
    logits = tf.cast(logits, tf.float32)
    if score == "logsumexp":
        return -tf.reduce_logsumexp(logits, axis=-1)
    if score == "max_logit":
        return -tf.reduce_max(logits, axis=-1)
    if logits.shape[-1] == 1:  # one class: its probability against "none" (open_set_outputs)
        return -tf.sigmoid(logits[:, 0])
    return -tf.reduce_max(tf.nn.softmax(logits, axis=-1), axis=-1)


def finite_rows(inputs):
    """`(batch,)` bool: rows whose every value is finite."""
    flat = tf.reshape(tf.cast(inputs, tf.float32), [tf.shape(inputs)[0], -1])
    return tf.reduce_all(tf.math.is_finite(flat), axis=1)


def decide(logits, classes, finite, threshold, score="logsumexp"):
    """`{classes, unknown_score, is_unknown}` of a batch.

    Args:
        logits: `(batch, K)` of the inputs (any value where not `finite`).
        classes: `(batch,)` int64 classes of a closed-set decision.
        finite: `(batch,)` bool, `finite_rows` of the inputs.
        threshold: the calibrated threshold, or None: only non-finite inputs
            are unknown.
    """
    scores = tf.where(finite, unknown_score(logits, score), np.inf)
    unknown = tf.logical_not(finite)
    if threshold is not None:
        unknown = tf.logical_or(unknown, scores > threshold)
    return {"classes": tf.where(finite, classes, tf.constant(-1, classes.dtype)),
            "unknown_score": scores, "is_unknown": unknown}


def calibrate(scores, true_positive_rate=0.95):
    """The threshold that keeps `true_positive_rate` of known inputs whose
    unknown scores are `scores`: their `true_positive_rate` quantile."""
    scores = np.asarray(scores, np.float64)
    if not 0.0 < true_positive_rate <= 1.0:
        raise ValueError(f"true_positive_rate must be in (0, 1]. Received: "
                         f"true_positive_rate={true_positive_rate!r}")
    if scores.ndim != 1 or not len(scores) or not np.all(np.isfinite(scores)):
        raise ValueError(f"Calibration needs the finite unknown scores of at least one known "
                         f"input. Received: {scores.shape[0] if scores.ndim else 0} scores, "
                         f"{int(np.sum(~np.isfinite(scores)))} not finite")
    return float(np.quantile(scores, true_positive_rate, method="higher"))

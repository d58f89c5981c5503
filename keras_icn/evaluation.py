"""Evaluation: calibration, out-of-distribution detection, FGSM robustness.

Pure measures of arrays and a network, and `evaluate()`, which applies them all
to a model on a split of a dataset, test or validation (used by `tools/evaluate.py` and
`tools/study.py`).
"""

import numpy as np
from scipy import special, stats
import tensorflow as tf

from keras_icn import bounds, datasets, losses, quality, sampler
from keras_icn import reference as reference_lib


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


def class_probabilities(logits):
    """`(N, K)` softmax probabilities of `(N, K)` logits. One logit (a one-class
    model): `(N, 2)`, the class's sigmoid and its complement, so that the arg-max
    is the model's decision (class 0 where f(x) > 0: `sampler.classified_as`)."""
    logits = np.asarray(logits, np.float64)
    if logits.shape[1] == 1:
        return np.concatenate([special.expit(logits), special.expit(-logits)], axis=1)
    return special.softmax(logits, axis=1)


def ood_scores(logits):
    """Scores that are high for in-distribution inputs: max softmax probability
    (for one logit its sigmoid, as `keras_icn.open_set` has it), the log-sum-exp of
    the logits, and the maximum logit (Vaze et al., 2022)."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_normalizer = np.log(np.exp(shifted).sum(axis=1))
    max_softmax = (special.expit(logits[:, 0]) if logits.shape[1] == 1
                   else np.exp(-log_normalizer))
    return {"max_softmax": max_softmax,
            "logsumexp": log_normalizer + logits.max(axis=1),
            "max_logit": logits.max(axis=1)}


def fpr_at_tpr(known_scores, unknown_scores, tpr=0.95):
    """The fraction of unknown inputs kept (false positives) at the threshold
    that keeps `tpr` of the known ones (scores high for known)."""
    threshold = np.quantile(np.asarray(known_scores, np.float64), 1.0 - tpr)
    return float(np.mean(np.asarray(unknown_scores) >= threshold))


def open_set_classification_rate(known_scores, known_correct, unknown_scores):
    """OSCR (Dhamija et al., 2018): the area under the curve of correct
    classification rate (known inputs kept and classified right) against false
    positive rate (unknown inputs kept), over every threshold."""
    known_scores = np.asarray(known_scores, np.float64)
    unknown_scores = np.asarray(unknown_scores, np.float64)
    thresholds = np.unique(np.concatenate([known_scores, unknown_scores]))[::-1]
    ccr = [np.mean((known_scores >= t) & known_correct) for t in thresholds]
    fpr = [np.mean(unknown_scores >= t) for t in thresholds]
    return float(np.trapezoid(np.concatenate([[0.0], ccr]), np.concatenate([[0.0], fpr])))


def parse_epsilon(text):
    """An FGSM step size from text: a number, or a fraction such as `"8/255"`."""
    numerator, _, denominator = str(text).partition("/")
    try:
        return float(numerator) / (float(denominator) if denominator else 1.0)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"An FGSM epsilon must be a number or a fraction like 8/255. "
                         f"Received: {text!r}") from None


def fgsm_direction(network, images, labels):
    """sign(grad_x loss), the direction of an FGSM step, whatever its size (the loss:
    `losses.per_example_loss`, cross-entropy or, for one logit, softplus(-f))."""
    images = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(images)
        loss = losses.per_example_loss(sampler.logits_of(network, images), labels)
    return tf.sign(tape.gradient(loss, images))


def fgsm(network, images, labels, epsilon, value_range):
    """Fast gradient sign adversarial examples: x + epsilon * sign(grad_x loss), clipped.

    `epsilon` is in the units of `value_range` (0.1 on [0, 1] is 25.5 gray levels).
    """
    images = tf.convert_to_tensor(images, tf.float32)
    return bounds.clip(images + epsilon * fgsm_direction(network, images, labels), value_range)


def _correct(logits, labels):
    """`(N,)` bool numpy: classified as labelled (`sampler.classified_as`)."""
    return np.asarray(sampler.classified_as(logits, labels))


def _logits(network, images, batch_size):
    return np.concatenate([sampler.logits_of(network, images[i:i + batch_size]).numpy()
                           for i in range(0, len(images), batch_size)])


def _fgsm_logits(source, target, images, labels, epsilons, value_range, batch_size):
    """`target`'s logits on FGSM examples crafted on `source`, by epsilon: each
    batch's gradient is taken once, for every epsilon."""
    logits = {epsilon: [] for epsilon in epsilons}
    for i in range(0, len(images), batch_size):
        batch = tf.convert_to_tensor(images[i:i + batch_size], tf.float32)
        direction = fgsm_direction(source, batch, labels[i:i + batch_size])
        for epsilon in epsilons:
            adversarial = bounds.clip(batch + epsilon * direction, value_range)
            logits[epsilon].append(sampler.logits_of(target, adversarial).numpy())
    return {epsilon: np.concatenate(parts) for epsilon, parts in logits.items()}


def evaluate(model, dataset, data_dir=None, split="test", epsilons=(0.05, 0.1, 0.2),
             transfer_from=None, ood_dataset=None, samples_per_class=20, batch_size=500,
             seed=0, max_examples=None, per_example=False, reference=None,
             training_split="train", label_column=None, known_classes=None,
             series_length=None):
    """Every measure of `tools/evaluate.py` for `model` on `dataset`'s `split`
    (any dataset `keras_icn.datasets.open_dataset` opens: images, series, tables).

    Args:
        split: a TFDS split string: `"test"`, or a run's validation split
            (`keras_icn.config.evaluation_split`).
        max_examples: use only the split's first N examples.
        transfer_from: another model (e.g. `IntrospectiveClassifier`) to craft
            transferred FGSM examples with.
        ood_dataset: a second TFDS dataset of the same image shape.
        per_example: also return `per_example`, numpy arrays a row per example:
            `label`, `correct`, and `fgsm_correct/<epsilon>` (and transferred),
            from which every error above can be re-derived.
        reference: a reference classifier (`keras_icn.reference`) to measure
            the synthesized samples' quality in its feature space.
        training_split: the split the model was trained on, for the
            memorisation check of the quality measures.
        label_column, series_length: options of an array source, as the run
            had them (`keras_icn.datasets.open_dataset`).
        known_classes: the classes the model was trained on (labels of
            `dataset`, in the model's order); the others' examples of `split`
            are scored as unknown: `open_set` holds, by score, the AUROC of
            known against unknown, the FPR at 95% TPR and the OSCR.

    Returns:
        A JSON-ready dict (but `per_example`): error (on `split`), per_class_error
        (a list by class), balanced_error (their mean), ece, fgsm_error and fgsm_transfer_error
        (by epsilon), fgsm_detection_auroc and fgsm_transfer_detection_auroc (clean
        against adversarial images by the log-sum-exp of the logits, by epsilon),
        synthesis_accuracy, ood_auroc (by data, by score); with `reference`,
        synthesis_quality (`sample_quality`).
    """
    value_range = model.value_range
    data_source = datasets.open_dataset(dataset, data_dir, label_column=label_column,
                                        known_classes=known_classes, series_length=series_length)
    images, labels = data_source.arrays(split, model)
    images, labels = images[:max_examples], labels[:max_examples]
    logits = _logits(model, images, batch_size)
    correct = _correct(logits, labels)
    # None for a class the split lacks; balanced error is the mean over the others.
    per_class = [float(1.0 - np.mean(correct[labels == k])) if np.any(labels == k) else None
                 for k in range(max(model.num_classes, 1))]
    results = {"dataset": dataset, "split": split, "examples": len(labels),
               "error": float(1.0 - np.mean(correct)), "per_class_error": per_class,
               "balanced_error": float(np.mean([e for e in per_class if e is not None])),
               "ece": expected_calibration_error(class_probabilities(logits), labels)}
    examples = {"label": labels, "correct": correct}
    in_scores = ood_scores(logits)
    attackers = {"fgsm": model}
    if transfer_from is not None:
        attackers["fgsm_transfer"] = transfer_from
    for name, source in attackers.items():
        results[f"{name}_error"], results[f"{name}_detection_auroc"] = {}, {}
        adversarial_logits = _fgsm_logits(source, model, images, labels, epsilons,
                                          value_range, batch_size)
        for epsilon in epsilons:
            adversarial = adversarial_logits[epsilon]
            examples[f"{name}_correct/{epsilon}"] = _correct(adversarial, labels)
            results[f"{name}_error"][str(epsilon)] = float(
                1.0 - np.mean(examples[f"{name}_correct/{epsilon}"]))
            # How well log-sum-exp tells clean images from the adversarial ones.
            results[f"{name}_detection_auroc"][str(epsilon)] = auroc(
                in_scores["logsumexp"], ood_scores(adversarial)["logsumexp"])

    wanted = np.repeat(np.arange(model.num_classes), samples_per_class)
    samples = model.synthesize(wanted, seed=seed).numpy()
    results["synthesis_accuracy"] = float(np.mean(
        _correct(_logits(model, samples, batch_size), wanted)))
    if reference is not None:
        training = data_source.arrays(training_split, model)[0]
        # A series or table reference takes raw units; an image reference pixels in a range.
        raw = (lambda x: x) if data_source.kind == "image" else (
            lambda x: model.to_raw(x).numpy())
        results["synthesis_quality"] = sample_quality(
            reference, raw(samples), wanted, raw(images), labels, raw(training), value_range)

    # Uniform over the value range (unbounded: over the split's own range).
    low, high = value_range if value_range is not None else (images.min(0), images.max(0))
    others = {"uniform_noise": np.random.default_rng(seed).uniform(
        low, high, images.shape).astype("float32")}
    if ood_dataset:
        others[ood_dataset] = datasets.open_dataset(ood_dataset, data_dir).arrays(
            "test", model)[0][:len(images)]
    results["ood_auroc"] = {}
    for name, other in others.items():
        out_scores = ood_scores(_logits(model, other, batch_size))
        results["ood_auroc"][name] = {score: auroc(in_scores[score], out_scores[score])
                                      for score in in_scores}
    unknown = data_source.unknown_arrays(split, model)
    if unknown is not None:  # open set: the classes held out of training
        unknown_scores = ood_scores(_logits(model, unknown[0][:max_examples], batch_size))
        results["open_set"] = {"unknown_examples": len(unknown_scores["logsumexp"])}
        for score in in_scores:
            results["open_set"][score] = {
                "auroc": auroc(in_scores[score], unknown_scores[score]),
                "fpr_at_95_tpr": fpr_at_tpr(in_scores[score], unknown_scores[score]),
                "oscr": open_set_classification_rate(in_scores[score], correct,
                                                     unknown_scores[score])}
    if per_example:
        results["per_example"] = examples
    return results


def _halves(real, real_labels):
    """`real` split in two: `(stand-in half, compared half)`, each `(images, labels)`.
    Samples are compared with the second half; the first supplies the real
    images measured as a yardstick, so they are never compared with themselves."""
    half = len(real) // 2
    return (real[:half], real_labels[:half]), (real[half:], real_labels[half:])


def sample_quality_measure(reference, real, real_labels, training, value_range):
    """`measure(images, labels)`: `quality.synthesis_quality` of `images` in
    `reference`'s feature space against the second half of `real`, with the
    real and training images' features computed once, for measuring many sets.
    `real_stand_ins` gives the first-half images to measure as a yardstick."""
    def features(images):
        return reference_lib.features(reference, images, value_range)

    _, (compared, compared_labels) = _halves(real, real_labels)
    real_features, training_features = features(compared), features(training)

    def measure(images, labels):
        return quality.synthesis_quality(features(images), labels, real_features,
                                         compared_labels, training_features)

    return measure


def real_stand_ins(real, real_labels, sample_labels):
    """As many images of each class as `sample_labels` has, from the first half
    of `real` (the half `sample_quality_measure` does not compare with):
    `(images, labels)`, what a perfect generator would make."""
    (images, labels), _ = _halves(real, real_labels)
    rows = np.concatenate([np.flatnonzero(labels == label)[:count]
                           for label, count in zip(*np.unique(sample_labels, return_counts=True))])
    return images[rows], labels[rows]


def sample_quality(reference, samples, sample_labels, real, real_labels, training,
                   value_range):
    """`quality.synthesis_quality` of `samples` in `reference`'s feature space, and
    the same for real images, so the numbers have a yardstick.

    `real` (held-out images, e.g. the test split) is halved: the measures of
    the samples compare them with the second half; `real_images` repeats them
    with as many first-half images of each class standing in for the samples
    (`real_stand_ins`).

    Returns:
        `{"samples": ..., "real_images": ...}`, each `synthesis_quality`'s dict.
    """
    measure = sample_quality_measure(reference, real, real_labels, training, value_range)
    return {"samples": measure(samples, sample_labels),
            "real_images": measure(*real_stand_ins(real, real_labels, sample_labels))}


def paired_difference(treated, control, confidence=0.95):
    """Paired comparison over seeds: `treated[i] - control[i]`.

    Returns the mean difference, its `confidence` interval (Student t with n-1
    degrees of freedom) and the two-sided p-value of the paired t-test; the
    interval and p-value are None with fewer than 2 pairs or no spread.
    """
    treated, control = np.asarray(treated, float), np.asarray(control, float)
    if treated.shape != control.shape or treated.ndim != 1:
        raise ValueError(f"paired_difference needs two equal-length lists. Received: "
                         f"{treated.shape} and {control.shape}")
    differences = treated - control
    result = {"mean": float(np.mean(differences)), "differences": differences.tolist(),
              "ci_low": None, "ci_high": None, "p_value": None}
    if len(differences) < 2 or not np.std(differences) > 0:
        return result
    interval = stats.t.interval(confidence, len(differences) - 1, loc=np.mean(differences),
                                scale=stats.sem(differences))
    result.update(ci_low=float(interval[0]), ci_high=float(interval[1]),
                  p_value=float(stats.ttest_rel(treated, control).pvalue))
    return result

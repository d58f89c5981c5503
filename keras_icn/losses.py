"""The introspective objective.

    loss = cross_entropy(positives)
         + introspective_weight * [mean softplus(-f_y(x)) over positives
                                   + mean softplus(f_k(x-)) over pseudo-negatives]

The bracket is one logistic "class k against its pseudo-negatives" term per
class. Its positive half is required: softmax cross-entropy is invariant to
shifting all logits, so without it the pseudo-negative half alone would drive
every logit to -inf. With a single logit (the paper's binary case) there is no
cross-entropy and the bracket is the whole loss.
"""

import keras
from keras import ops

from keras_icn.sampler import class_logits


def classification_loss(logits, labels, label_smoothing=0.0):
    """Mean softmax cross-entropy of the positives, against targets that put
    `label_smoothing` evenly on all classes; 0 for a single logit."""
    if logits.shape[-1] == 1:
        return ops.zeros((), logits.dtype)
    if not label_smoothing:
        return ops.mean(ops.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    targets = ops.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return ops.mean(keras.losses.categorical_crossentropy(
        targets, logits, from_logits=True, label_smoothing=label_smoothing))


def per_example_loss(logits, labels):
    """`(batch,)` the loss evaluation reports and FGSM climbs: softmax cross-entropy,
    or for a single logit softplus(-f(x)), the logistic loss of the class."""
    if logits.shape[-1] == 1:
        return ops.softplus(-logits[:, 0])
    return ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def introspective_loss(positive_logits, labels, negative_logits, negative_labels):
    """mean softplus(-f_y(x)) over positives + mean softplus(f_k(x-)) over negatives."""
    positive_term = ops.mean(ops.softplus(-class_logits(positive_logits, labels)))
    negative_term = ops.mean(ops.softplus(class_logits(negative_logits, negative_labels)))
    return positive_term + negative_term

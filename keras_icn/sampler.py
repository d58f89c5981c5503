"""Langevin dynamics on the input: how pseudo-negatives are synthesized.

A pseudo-negative of class k is a sample of p_k(x) ∝ exp(f_k(x)) p_0(x), drawn
by T steps of

    x <- clip(x + (step_size / 2) * grad_x f_k(x) + noise_stddev * eta, value_range),
    eta ~ N(0, I),

from start points x ~ p_0. With a `metric` C (`synthesis_metric="prior"`: p_0's
covariance, `PixelPrior.covariance_times`), the step is preconditioned,

    x <- clip(x + (step_size / 2) * C grad_x f_k(x) + noise_stddev * C^(1/2) eta, value_range),

Langevin dynamics in p_0's whitened coordinates: the chain moves most in the
directions real inputs vary most in (for images, smooth shapes and colours,
not the high-frequency patterns a classifier's raw gradient is largest in).
The loop is a `tf.while_loop`, so it compiles into
the training step (Keras applies no AutoGraph there) and under XLA; randomness
is stateless, derived from one seed, so a seed fixes the samples.
"""

import tensorflow as tf
from keras import ops

from keras_icn import bounds, randomness


def logits_of(network, images, training=False):
    """`network`'s logits as float32, also for a network that computes in float16
    or bfloat16 under a mixed-precision policy: scores, losses and the Langevin
    update stay in float32."""
    return ops.cast(network(images, training=training), "float32")


def class_logits(logits, labels):
    """f_k(x): the logit of each sample's target class, `(batch,)`.

    With a single logit (the binary case) that logit is the class score.
    """
    if logits.shape[-1] == 1:
        return logits[:, 0]
    return tf.gather(logits, ops.cast(labels, "int32"), axis=1, batch_dims=1)


def target_probability(logits, labels):
    """q(k|x): softmax probability of the target class (sigmoid if binary)."""
    if logits.shape[-1] == 1:
        return ops.sigmoid(logits[:, 0])
    return class_logits(ops.softmax(logits, axis=-1), labels)


def classified_as(logits, labels):
    """Whether the network assigns each sample to its target class, `(batch,)` bool.

    Multi-class: the arg-max logit is the target. Binary (one logit): f(x) > 0.
    """
    if logits.shape[-1] == 1:
        return logits[:, 0] > 0
    return ops.cast(ops.argmax(logits, axis=-1), "int32") == ops.cast(labels, "int32")


def per_sample(mask, values):
    """A `(batch,)` mask shaped to broadcast over `values` `(batch, ...)`."""
    return tf.reshape(mask, [-1] + [1] * (values.shape.rank - 1))


def langevin_step(network, images, labels, seed, step_size, noise_stddev, value_range,
                  metric=None):
    """One Langevin step for a batch; a pure function of its arguments.

    Args:
        network: maps images to logits; run in inference mode (BatchNorm uses
            its moving statistics, so samples do not interact).
        images: `(batch, ...)` current samples (images `(batch, H, W, C)`,
            series `(batch, T, C)`, feature vectors `(batch, F)`), in `value_range`.
        labels: `(batch,)` int target classes k.
        seed: int stateless seed for the noise: `(2,)` for the batch, or
            `(batch, 2)`, one per sample (see `keras_icn.randomness`).
        step_size: ε; the gradient step is ε/2.
        noise_stddev: σ of the Gaussian noise.
        value_range: `(low, high)` the samples are clipped to, per feature if
            arrays, or None (see `keras_icn.bounds`).
        metric: None (the identity), or a `PixelPrior` whose covariance C
            preconditions the step (`covariance_times`, `gaussian_noise`).

    Returns:
        `(next_images, logits)`: the updated samples and the network's logits
        at `images` (before the step).
    """
    with tf.GradientTape() as tape:
        tape.watch(images)
        logits = logits_of(network, images)
        scores = class_logits(logits, labels)
    # Samples are independent, so the gradient of the sum is each sample's own.
    gradient = tape.gradient(scores, images)
    if metric is None:
        noise = randomness.normal(seed, tf.shape(images)[0], images.shape[1:], images.dtype)
    else:
        gradient = metric.covariance_times(gradient)
        noise = metric.gaussian_noise(tf.shape(images)[0], seed)
    next_images = bounds.clip(images + (0.5 * step_size) * gradient + noise_stddev * noise,
                              value_range)
    return next_images, logits


def langevin_dynamics(network, images, labels, num_steps, seed, step_size, noise_stddev,
                      value_range, stop_probability=None, metric=None):
    """Runs `num_steps` Langevin steps from `images` inside one `tf.while_loop`.

    Args:
        network, labels, step_size, noise_stddev, value_range, metric: as
            for `langevin_step`.
        images: `(batch, ...)` start points (from p_0 or the pool).
        num_steps: T, a Python int or int scalar tensor.
        seed: int stateless seed, `(2,)` or `(batch, 2)`; step t uses
            `fold_in(seed, t)`.
        stop_probability: if set, a sample stops moving once q(k|x) reaches it
            (a per-sample mask, in-graph); the loop ends when all have stopped.

    Returns:
        The final samples. Their logits are not computed here: the training
        step gets them from its own pass over the pseudo-negatives.
    """
    seed = tf.cast(seed, "int64")
    batch_size = tf.shape(images)[0]

    def keep_going(step, samples, active):
        return tf.logical_and(step < num_steps, tf.reduce_any(active))

    def body(step, samples, active):
        step_seed = randomness.fold_in(seed, step)
        moved, logits = langevin_step(network, samples, labels, step_seed, step_size,
                                      noise_stddev, value_range, metric)
        if stop_probability is not None:
            active = tf.logical_and(active, target_probability(logits, labels) < stop_probability)
            moved = tf.where(per_sample(active, samples), moved, samples)
        return step + 1, moved, active

    _, samples, _ = tf.while_loop(
        keep_going, body, (tf.constant(0, "int32"), images, tf.ones([batch_size], "bool"))
    )
    return samples


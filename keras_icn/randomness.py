"""Stateless random numbers, for a whole batch or per sample.

A seed of shape `(2,)` draws the whole batch from one stream (training). A seed
of shape `(batch, 2)` gives every sample its own stream, so a sample's numbers
depend on its own seed alone, not on what else is in the batch: the promise of
the `synthesize` serving signature (same seed and label, same image).
"""

import tensorflow as tf


def _per_sample(seed):
    return seed.shape.rank == 2


def split(seed, count):
    """`count` independent seeds of the same shape as `seed`."""
    if _per_sample(seed):
        seeds = tf.map_fn(
            lambda s: tf.cast(tf.random.experimental.stateless_split(s, count), seed.dtype), seed)
        return tf.unstack(seeds, count, axis=1)  # each (batch, 2)
    return tf.unstack(tf.random.experimental.stateless_split(seed, count), count)


def fold_in(seed, data):
    """A new seed from `seed` and an int scalar (e.g. a step number)."""
    if _per_sample(seed):
        return tf.map_fn(
            lambda s: tf.cast(tf.random.experimental.stateless_fold_in(s, data), seed.dtype), seed)
    return tf.random.experimental.stateless_fold_in(seed, data)


def normal(seed, batch_size, sample_shape, dtype=tf.float32):
    """N(0, 1) numbers of shape `(batch_size,) + sample_shape`."""
    if _per_sample(seed):
        return tf.map_fn(lambda s: tf.random.stateless_normal(sample_shape, s, dtype=dtype), seed,
                         fn_output_signature=dtype)
    return tf.random.stateless_normal((batch_size,) + tuple(sample_shape), seed, dtype=dtype)


def uniform(seed, batch_size, sample_shape, minval, maxval, dtype=tf.float32):
    """Uniform numbers in `[minval, maxval)` of shape `(batch_size,) + sample_shape`."""
    def draw(shape, s):
        return tf.random.stateless_uniform(shape, s, minval=minval, maxval=maxval, dtype=dtype)

    if _per_sample(seed):
        return tf.map_fn(lambda s: draw(sample_shape, s), seed, fn_output_signature=dtype)
    return draw((batch_size,) + tuple(sample_shape), seed)

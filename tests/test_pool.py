import numpy as np
import pytest
import tensorflow as tf

from keras_icn.pool import PseudoNegativePool

SHAPE = (2, 2, 1)


def entries(first, count):
    """`count` entries whose image values and labels encode their entry number."""
    numbers = np.arange(first, first + count)
    images = np.broadcast_to(numbers[:, None, None, None], (count,) + SHAPE).astype("float32")
    return images, numbers.astype("int32"), numbers, numbers / 100.0


def test_add_appends_and_counts():
    pool = PseudoNegativePool(8, SHAPE)
    assert int(pool.size) == 0
    assert bool(pool.add(*entries(0, 3)))
    assert int(pool.size) == 3 and int(pool.count.numpy()) == 3
    np.testing.assert_array_equal(pool.labels.numpy()[:3], [0, 1, 2])
    np.testing.assert_allclose(pool.scores.numpy()[:3], [0.0, 0.01, 0.02])


def test_ring_buffer_keeps_entry_i_in_slot_i_mod_capacity():
    pool = PseudoNegativePool(5, SHAPE)
    for first in range(0, 12, 3):
        pool.add(*entries(first, 3))
    assert int(pool.count.numpy()) == 12 and int(pool.size) == 5
    # Entries 7..11 survive, entry i in slot i % 5.
    expected = np.empty(5, "int32")
    for number in range(7, 12):
        expected[number % 5] = number
    np.testing.assert_array_equal(pool.labels.numpy(), expected)
    np.testing.assert_array_equal(pool.steps.numpy(), expected)
    np.testing.assert_array_equal(pool.images.numpy()[:, 0, 0, 0], expected)


def test_non_finite_batch_is_refused_whole():
    pool = PseudoNegativePool(8, SHAPE)
    pool.add(*entries(0, 2))
    images, labels, steps, scores = entries(2, 2)
    images[1, 0, 0, 0] = np.nan
    assert not bool(pool.add(images, labels, steps, scores))
    assert int(pool.count.numpy()) == 2
    assert int(pool.rejected_step.numpy()) == 3
    assert np.all(np.isfinite(pool.images.numpy()))


def test_sample_draws_only_held_entries_and_is_seeded():
    pool = PseudoNegativePool(16, SHAPE)
    pool.add(*entries(100, 4))
    images, labels = pool.sample(64, tf.constant([1, 2]))
    assert set(labels.numpy().tolist()) <= {100, 101, 102, 103}
    np.testing.assert_array_equal(images.numpy()[:, 0, 0, 0], labels.numpy())
    again = pool.sample(64, tf.constant([1, 2]))[1]
    np.testing.assert_array_equal(labels.numpy(), again.numpy())


def test_bad_capacity_and_oversized_batch_raise():
    with pytest.raises(ValueError, match="pool_capacity"):
        PseudoNegativePool(0, SHAPE)
    with pytest.raises(ValueError, match="capacity 2"):
        PseudoNegativePool(2, SHAPE).add(*entries(0, 3))

"""Value bounds of a model's input space: what Langevin chains, p_0 and FGSM
examples are clipped to.

A `value_range` is one of:
- `(low, high)`, two numbers: every value in `[low, high]` (images: `(0, 1)`);
- `(low, high)`, two arrays broadcastable to one input's shape: per feature
  (a table's columns) or per channel (a series' `(C,)` broadcasts over time);
- `None`: unbounded, nothing is clipped.
"""

import numpy as np
from keras import ops


def normalize(value_range, input_shape=None):
    """`value_range` checked: None, two floats, or two float32 arrays.

    Raises:
        ValueError: not a pair, low >= high anywhere, or arrays that do not
            broadcast to `input_shape`; the message names the value.
    """
    if value_range is None:
        return None
    try:
        low, high = value_range
    except (TypeError, ValueError):
        raise ValueError(f"value_range must be (low, high) or None. "
                         f"Received: value_range={value_range!r}") from None
    if np.ndim(low) == 0 and np.ndim(high) == 0:
        low, high = float(low), float(high)
    else:
        low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        if input_shape is not None:
            try:
                np.broadcast_to(low, input_shape), np.broadcast_to(high, input_shape)
            except ValueError:
                raise ValueError(
                    f"value_range's bounds (shapes {low.shape} and {high.shape}) must broadcast "
                    f"to the input shape {tuple(input_shape)}: one per feature, or per "
                    "channel (the last axis).") from None
    if not np.all(np.asarray(low) < np.asarray(high)):
        raise ValueError(f"value_range must be (low, high) with low < high everywhere. "
                         f"Received: value_range={value_range!r}")
    return low, high


def clip(values, value_range):
    """`values` clipped to `value_range` (unchanged where it is None)."""
    if value_range is None:
        return values
    low, high = value_range
    return ops.clip(values, low, high)


def to_config(value_range):
    """`value_range` as JSON values (arrays as nested lists)."""
    if value_range is None:
        return None
    return tuple(np.asarray(v).tolist() if np.ndim(v) else v for v in value_range)


def uniform_moments(value_range, input_shape):
    """Mean and variance, each of `input_shape`, of uniform noise over
    `value_range`; of N(0, 1) where it is None (standardized inputs)."""
    if value_range is None:
        return np.zeros(input_shape, np.float32), np.ones(input_shape, np.float32)
    low, high = (np.broadcast_to(np.asarray(v, np.float32), input_shape) for v in value_range)
    return (low + high) / 2, (high - low) ** 2 / 12


def at_bounds(values, value_range, tolerance=1e-6):
    """Boolean array: where `values` sit within `tolerance` (a fraction of the
    range) of either bound; NaN counts as at a bound. Unbounded: NaN only."""
    values = np.asarray(values)
    if value_range is None:
        return np.isnan(values)
    low, high = (np.asarray(v) for v in value_range)
    margin = tolerance * (high - low)
    return ~((values > low + margin) & (values < high - margin))

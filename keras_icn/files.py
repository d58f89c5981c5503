"""Atomic file writes: nothing is ever half-written where a reader looks.

Data goes to a temporary name in the same directory, then is renamed over the
final name, so a run killed at any moment leaves the old file or the new one.
Paths go through `tf.io.gfile`, so `gs://` works too.
"""

import json
import os
import uuid

import tensorflow as tf


def temporary_path(path):
    """A fresh name beside `path` (same directory, same suffix) for an atomic write."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".tmp-{uuid.uuid4().hex[:8]}-{name}")


def commit(temporary, path):
    """Renames a finished `temporary` file over `path`."""
    tf.io.gfile.rename(temporary, path, overwrite=True)


def write_bytes(path, data):
    """Writes `data` (bytes or str) to `path` atomically."""
    temporary = temporary_path(path)
    with tf.io.gfile.GFile(temporary, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
        f.flush()
    commit(temporary, path)


def write_json(path, value):
    """Writes `value` as indented JSON to `path` atomically."""
    write_bytes(path, json.dumps(value, indent=2, sort_keys=True) + "\n")

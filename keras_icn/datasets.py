"""One view of a run's data, whatever its source: a TFDS image dataset
(`keras_icn.data`) or labelled arrays (`keras_icn.sources`: bundled sensor
series and tables, the user's CSV, NPZ and .ts files).

Both give what training and evaluation need: the input shape, the classes,
split names (TFDS's: `"test"`, `"train[:N]"`, `"train[A:]"`) and each split's
examples in the model's units. Images come as pixels and are scaled to the
model's `value_range`; arrays come in raw units and are standardized with the
statistics of the run's training split, which the model stores, so its
exported signatures take and return raw units.
"""

import dataclasses
import functools
from typing import Optional

import numpy as np
import tensorflow as tf

from keras_icn import bounds, data, sources

KINDS = {3: "image", 2: "series", 1: "table"}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A run's data: what it is, and its splits.

    Attributes:
        name: the `--dataset` value.
        input_shape: one example's shape.
        class_names: the name of each class, in label order.
        source: the `keras_icn.sources.Source` of an array dataset, else None.
        info: the `tfds.core.DatasetInfo` of a TFDS dataset, else None.
    """

    name: str
    input_shape: tuple
    class_names: list
    source: Optional[sources.Source] = None
    info: object = None
    data_dir: Optional[str] = None

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def kind(self):
        """`"image"`, `"series"` or `"table"`, by the input's rank."""
        return KINDS.get(len(self.input_shape), "image")

    def num_examples(self, split):
        if self.source is None:
            return self.info.splits[split].num_examples
        return len(sources.split(self.source, split)[1])

    def training_splits(self, train_examples=None, validation_examples=0):
        """`(train, validation)` split names, as `data.training_splits`."""
        return data.training_splits(self.name, self.num_examples("train"), train_examples,
                                    validation_examples)

    def labels(self, split):
        """The labels of `split`, in order, int numpy."""
        if self.source is None:
            return data.split_labels(self.name, split, self.data_dir)
        return sources.split(self.source, split)[1]

    def examples(self, split, model):
        """Unbatched `(input, label)` pairs of `split` in `model`'s units
        (float32, int32): `model` maps raw values (`from_raw`)."""
        if self.source is None:
            return data.load_split(self.name, split, self.data_dir, model.value_range)
        x, y = sources.split(self.source, split)
        return tf.data.Dataset.from_tensor_slices(
            (model.from_raw(x).numpy(), y.astype(np.int32)))

    def arrays(self, split, model):
        """All of `split` as numpy `(inputs, labels)` in `model`'s units."""
        if self.source is None:
            batches = list(self.examples(split, model).batch(10_000))
            return (np.concatenate([b[0].numpy() for b in batches]),
                    np.concatenate([b[1].numpy() for b in batches]))
        x, y = sources.split(self.source, split)
        return model.from_raw(x).numpy(), y.astype(np.int32)

    def model_units(self, train_split, margin=0.1, bounded=True):
        """The model arguments for an array dataset's units: `standardization`
        (mean, std per feature or channel) of `train_split`, and `value_range`,
        the standardized training range widened by `margin` on each side (or
        None with `bounded=False`). `{}` for images (pixels, `value_range`)."""
        if self.source is None:
            return {}
        x = sources.split(self.source, train_split)[0]
        mean, std = sources.standardization(x)
        value_range = sources.value_bounds((x - mean) / std, margin) if bounded else None
        return {"standardization": (mean, std), "value_range": bounds.normalize(value_range)}


@functools.lru_cache(maxsize=8)
def _load_source(name, label_column):
    return sources.load(name, **({"label_column": label_column} if label_column else {}))


def open_dataset(name, data_dir=None, download=False, label_column=None):
    """The `Dataset` named `name`: an array source (`keras_icn.sources.is_source`;
    `label_column` for `csv:PATH`) or a TFDS image-classification dataset (see
    `keras_icn.data.dataset_info`)."""
    if sources.is_source(name):
        source = _load_source(name, label_column)
        return Dataset(name, source.input_shape, list(source.class_names), source=source)
    info = data.dataset_info(name, data_dir, download)
    return Dataset(name, tuple(info.features["image"].shape),
                   list(info.features["label"].names), info=info, data_dir=data_dir)

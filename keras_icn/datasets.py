"""One view of a run's data, whatever its source: a TFDS image dataset
(`keras_icn.data`) or labelled arrays (`keras_icn.sources`: bundled sensor
series and tables, the user's CSV, NPZ and .ts files).

Both give what training and evaluation need: the input shape, the classes,
split names (TFDS's: `"test"`, `"train[:N]"`, `"train[A:]"`) and each split's
examples in the model's units. With `known_classes`, a dataset holds only those
classes, relabelled 0..k-1 in the order given (a split is sliced first, then
filtered); the other classes' examples are the unknown ones of open-set
evaluation (`unknown_arrays`). Images come as pixels and are scaled to the
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
        all_class_names: the name of each class of the whole dataset, in
            label order (`class_names`: of the known classes).
        source: the `keras_icn.sources.Source` of an array dataset, else None.
        info: the `tfds.core.DatasetInfo` of a TFDS dataset, else None.
        known_classes: the original labels of the classes kept, in their new
            order; None: all.
    """

    name: str
    input_shape: tuple
    all_class_names: list
    source: Optional[sources.Source] = None
    info: object = None
    data_dir: Optional[str] = None
    known_classes: Optional[tuple] = None

    @property
    def class_names(self):
        if self.known_classes is None:
            return list(self.all_class_names)
        return [self.all_class_names[k] for k in self.known_classes]

    @property
    def num_classes(self):
        return len(self.class_names)

    def _relabel(self):
        """Original label -> new label (-1: unknown), int32 numpy."""
        table = np.full(len(self.all_class_names), -1, np.int32)
        table[list(self.known_classes)] = np.arange(len(self.known_classes))
        return table

    @property
    def kind(self):
        """`"image"`, `"series"` or `"table"`, by the input's rank."""
        return KINDS.get(len(self.input_shape), "image")

    def num_examples(self, split):
        if self.known_classes is not None:
            return len(self.labels(split))
        if self.source is None:
            return self.info.splits[split].num_examples
        return len(sources.split(self.source, split)[1])

    @property
    def training_total(self):
        """Examples in the whole training split (of every class)."""
        return (self.info.splits["train"].num_examples if self.source is None
                else len(self.source.y_train))

    def training_splits(self, train_examples=None, validation_examples=0):
        """`(train, validation)` split names, as `data.training_splits`: slices of
        the whole training split (of every class)."""
        return data.training_splits(self.name, self.training_total, train_examples,
                                    validation_examples or 0)

    def _all_labels(self, split):
        if self.source is None:
            return data.split_labels(self.name, split, self.data_dir)
        return sources.split(self.source, split)[1]

    def labels(self, split):
        """The labels of `split`'s known examples, in order, int numpy."""
        labels = self._all_labels(split)
        if self.known_classes is None:
            return labels
        labels = self._relabel()[labels]
        return labels[labels >= 0]

    def examples(self, split, model):
        """Unbatched `(input, label)` pairs of `split`'s known examples in
        `model`'s units (float32, int32): `model` maps raw values (`from_raw`)."""
        if self.source is None:
            examples = data.load_split(self.name, split, self.data_dir, model.value_range)
        else:
            x, y = sources.split(self.source, split)
            examples = tf.data.Dataset.from_tensor_slices(
                (model.from_raw(x).numpy(), y.astype(np.int32)))
        if self.known_classes is None:
            return examples
        table = tf.constant(self._relabel())
        # The filter hides the count from tf.data; stating it lets Keras know an
        # epoch's steps (and not warn that the input "ran out of data").
        return (examples.map(lambda x, y: (x, tf.gather(table, y)))
                .filter(lambda x, y: y >= 0)
                .apply(tf.data.experimental.assert_cardinality(self.num_examples(split))))

    def _all_arrays(self, split, model):
        if self.source is None:
            return data.split_arrays(self.name, split, self.data_dir, model.value_range)
        x, y = sources.split(self.source, split)
        return (x if model is None else model.from_raw(x).numpy()), y.astype(np.int32)

    def arrays(self, split, model):
        """All of `split`'s known examples as numpy `(inputs, labels)` in
        `model`'s units (an array dataset's raw units with `model=None`)."""
        x, y = self._all_arrays(split, model)
        if self.known_classes is None:
            return x, y
        y = self._relabel()[y]
        return x[y >= 0], y[y >= 0]

    def unknown_arrays(self, split, model):
        """`split`'s examples of the classes not in `known_classes` (inputs in
        `model`'s units, original labels); None when every class is known."""
        if self.known_classes is None or len(self.known_classes) == len(self.all_class_names):
            return None
        x, y = self._all_arrays(split, model)
        unknown = self._relabel()[y] < 0
        return x[unknown], y[unknown]

    def model_units(self, train_split, margin=0.1, bounded=True):
        """The model arguments for an array dataset's units: `standardization`
        (mean, std per feature or channel) of `train_split`, and `value_range`,
        the standardized training range widened by `margin` on each side (or
        None with `bounded=False`). `{}` for images (pixels, `value_range`)."""
        if self.source is None:
            return {}
        x, y = sources.split(self.source, train_split)
        if self.known_classes is not None:  # the unknown classes' examples stay unseen
            x = x[self._relabel()[y] >= 0]
        mean, std = sources.standardization(x)
        value_range = sources.value_bounds((x - mean) / std, margin) if bounded else None
        return {"standardization": (mean, std), "value_range": bounds.normalize(value_range)}


@functools.lru_cache(maxsize=8)
def _load_source(name, label_column, series_length):
    options = {"label_column": label_column, "length": series_length}
    return sources.load(name, **{k: v for k, v in options.items() if v is not None})


def open_dataset(name, data_dir=None, download=False, label_column=None, known_classes=None,
                 series_length=None):
    """The `Dataset` named `name`: an array source (`keras_icn.sources.is_source`;
    `label_column` for `csv:PATH`, `series_length` to resample the series of
    `ts:PATH`, `basic_motions` or `plaid` to) or a TFDS image-classification
    dataset (see `keras_icn.data.dataset_info`), restricted to `known_classes`
    (different labels of the dataset; one makes a one-class problem) if given."""
    if series_length is not None and not (sources.is_source(name)
                                          and str(name).split(":")[0] in sources.SERIES_FORMS):
        raise ValueError(f"series_length resamples series ({', '.join(sources.SERIES_FORMS)}); "
                         f"{name!r} holds none. Received: series_length={series_length}")
    if sources.is_source(name):
        source = _load_source(name, label_column, series_length)
        dataset = Dataset(name, source.input_shape, list(source.class_names), source=source)
    else:
        info = data.dataset_info(name, data_dir, download)
        dataset = Dataset(name, tuple(info.features["image"].shape),
                          list(info.features["label"].names), info=info, data_dir=data_dir)
    if known_classes is None:
        return dataset
    known = tuple(int(k) for k in known_classes)
    total = len(dataset.all_class_names)
    if len(set(known)) != len(known) or not known or not all(0 <= k < total for k in known):
        raise ValueError(f"known_classes must be one or more different labels of {name} (0 to "
                         f"{total - 1}). Received: known_classes={list(known_classes)}")
    return dataclasses.replace(dataset, known_classes=known)

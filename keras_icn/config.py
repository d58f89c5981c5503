"""The settings of a training run: one frozen dataclass, its help, and its parsing.

`Config` holds every setting with its default and help text (in the field's
metadata), so the command-line flags of `tools/train.py` are generated from it
(`define_flags`, `from_flags`) and the `field=value` overrides of every tool go
through one parser (`override`). Settings left None take the dataset's recipe
(`RECIPES`) when the run starts (`resolve`); `config.json` records the resolved
config.

    config = override(Config(dataset="cifar10"), ["epochs=3", "mode=baseline"])
"""

import dataclasses
import inspect
import json
import math
import typing
from typing import Optional, Union

from absl import flags

from keras_icn import datasets, networks
from keras_icn import prior as prior_lib
from keras_icn.model import FROM_DATA, METRICS, IntrospectiveClassifier

# The model's own defaults are the config's: one source of truth.
_MODEL_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(IntrospectiveClassifier.__init__).parameters.items()
    if parameter.default is not inspect.Parameter.empty
}
_MODEL_FIELDS = (
    "value_range", "mode", "synthesis", "prior", "step_size", "noise_stddev", "num_langevin_steps",
    "synthesis_batch_size", "pool_capacity", "pool_batch_size", "reinit_probability",
    "introspective_weight", "stop_probability", "synthesis_steps", "introspection_warmup_steps",
    "unknown_score", "label_smoothing", "test_time_flips", "synthesis_metric",
)
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine")
STRATEGIES = ("none", "mirrored", "multi_worker")

# The training recipe of a dataset, by its inputs (and, for colour images, the
# network): the values that settings left as None take. "grey" is what the MNIST
# runs were tuned with. "fast" is the default for colour images: the fast CIFAR-10
# network (networks.fast_cnn) with airbench94's recipe in Keras' terms (Nesterov
# SGD at momentum 0.85, batches of 1024, a peak learning rate of 1.5 on the mean
# loss after 23% of the run, weight decay per step the same as airbench's coupled
# decay in steady state, label smoothing 0.2, 2-pixel crops and flips; see
# docs/cifar10.md). "resnet" is the paper's ResNet-32 with augmented positives,
# decoupled weight decay and a cosine schedule, with Adam, which beat SGD with
# momentum on a validation split. "series" and "table" are for standardized sensor
# series (T, C) and feature vectors (F,) (keras_icn.sources): small sets, so small
# batches and more epochs. A series' step size is larger: the FCN averages over
# time, so each value's gradient is small (BasicMotions: 20 synthesis steps of 1.0
# gave samples classified as asked 61% of the time, of 10.0 95%;
# docs/series-and-tables.md). fast_cnn's synthesize() takes 100 steps in p_0's metric:
# on the full-data study's models its samples were classified as requested 99-100% of
# the time at a Frechet distance of 32-38, against 90-99% and 116-124 for 20 plain
# steps (docs/cifar10.md); training does not use these two settings.
#
# Settings added with or after the "fast" recipe, as every other recipe keeps them: the values
# runs had before the settings existed, which is also what a config.json (or a
# study's record) without them means.
ADDED_SETTINGS = dict(momentum=0.9, lr_warmup=0.0, label_smoothing=0.0, crop_padding=4,
                      test_time_flips=False, synthesis_metric="pixel")
RECIPES = {
    "grey": dict(ADDED_SETTINGS, augment=False, optimizer="adam", learning_rate=1e-3,
                 weight_decay=0.0, lr_schedule="constant", introspection_warmup_steps=0,
                 step_size=_MODEL_DEFAULTS["step_size"], epochs=10, batch_size=128,
                 synthesis_steps=_MODEL_DEFAULTS["synthesis_steps"]),
    "fast": dict(augment=True, crop_padding=2, optimizer="sgd", momentum=0.85, learning_rate=1.5,
                 weight_decay=0.0089, lr_schedule="cosine", lr_warmup=0.23, label_smoothing=0.2,
                 test_time_flips=True,
                 introspection_warmup_steps=0, step_size=5.0, epochs=15, batch_size=1024,
                 synthesis_metric="prior", synthesis_steps=100),
    "resnet": dict(ADDED_SETTINGS, augment=True, optimizer="adam", learning_rate=1e-3,
                   weight_decay=0.05, lr_schedule="cosine", introspection_warmup_steps=0,
                   step_size=5.0, epochs=10, batch_size=128,
                   synthesis_steps=_MODEL_DEFAULTS["synthesis_steps"]),
    "series": dict(ADDED_SETTINGS, augment=False, optimizer="adam", learning_rate=1e-3,
                   weight_decay=0.0, lr_schedule="constant", introspection_warmup_steps=0,
                   step_size=10.0, epochs=60, batch_size=16, synthesis_steps=50),
    "table": dict(ADDED_SETTINGS, augment=False, optimizer="adam", learning_rate=1e-3,
                  weight_decay=0.0, lr_schedule="constant", introspection_warmup_steps=0,
                  step_size=1.0, epochs=60, batch_size=32, synthesis_steps=50),
}


def recipe_name(input_shape, network="auto"):
    """Which recipe an input shape (and network) takes: "table" (F,), "series"
    (T, C); for colour images "fast" (fast_cnn, which "auto" is from 9x9 pixels
    up: `networks.resolve`) or "resnet" (any other network); "grey" otherwise."""
    if len(input_shape) == 1:
        return "table"
    if len(input_shape) == 2:
        return "series"
    if input_shape[-1] != 3:
        return "grey"
    return "fast" if networks.resolve(network, input_shape).startswith("fast_cnn") else "resnet"


def _setting(default, help, choices=None):
    """A Config field: its default, its help text and, for a flag, its choices."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


def _model(name, help, choices=None):
    """A Config field that is an `IntrospectiveClassifier` argument, with its default."""
    return _setting(_MODEL_DEFAULTS[name], help, choices)


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of a run; `config.json` records it."""

    dataset: str = _setting("mnist", "TFDS image-classification dataset, a bundled series or "
                                     "table (basic_motions, plaid, breast_cancer, shuttle), or "
                                     "a file: csv:PATH (with label_column), npz:PATH, ts:PATH.")
    label_column: Optional[str] = _setting(None, "csv:PATH: the column that holds the labels.")
    series_length: Optional[int] = _setting(
        None, "ts:PATH, basic_motions, plaid: resample every series to this many steps by "
              "linear interpolation (needed for files of series of different lengths); "
              "default: the data's own (plaid: 256).")
    known_classes: Optional[tuple] = _setting(
        None, "Train on these classes only (labels, comma-separated, e.g. 0,1,2,3,4,5), "
              "relabelled 0..k-1 in that order; the others are the unknown classes of "
              "open-set evaluation. One label: a one-class (anomaly-detection) model, one "
              "logit, its chains from p_0 (synthesis=fresh). Default: every class.")
    value_bounds: str = _setting(
        "data", "Series and tables: data (chains stay within the training range, standardized, "
                "widened by 10% on each side) or none (unbounded). Images: see value_range.",
        ("data", "none"))
    data_dir: Optional[str] = _setting(
        None, "TFDS data_dir (default: TFDS_DATA_DIR or ~/tensorflow_datasets).")
    download: bool = _setting(True, "Let TFDS download a dataset the data_dir lacks (needs "
                                    "internet; fails in seconds without). --nodownload: never.")
    train_examples: Optional[int] = _setting(
        None, "Train on the first N training examples (default: all).")
    validation_examples: Optional[int] = _setting(
        None, "Hold out the last N training examples for validation and to calibrate the "
              "unknown threshold; auto: 10% of the training split, at most 5000 (none for sets "
              "under 1000 examples, whose threshold then stays uncalibrated).")
    unknown_true_positive_rate: float = _setting(
        0.95, "The share of the validation examples that the calibrated unknown threshold "
              "keeps (see keras_icn.open_set).")
    examples_per_class: Optional[int] = _setting(
        None, "Train on the first N examples of each class (of the training examples left "
              "after train_examples and validation_examples); with imbalance_ratio, N of class "
              "0 and fewer of the others. Default: every example.")
    imbalance_ratio: float = _setting(
        1.0, "With examples_per_class: class k keeps floor(N * R^(-k/(K-1))) examples, a long "
             "tail from N down to N/R. 1: balanced.")
    epochs: Optional[int] = _setting(None, "Training epochs; auto: 10 for images, 60 for "
                                           "series and tables.")
    batch_size: Optional[int] = _setting(None, "Positives per training step; auto: 1024 for "
                                               "fast_cnn, 128 for other image networks, 16 "
                                               "for series, 32 for tables.")
    network: str = _setting("auto", "auto (MNIST CNN for grey images, fast_cnn for colour ones, "
                                    "FCN for series, MLP for tables), mnist_cnn, fast_cnn "
                                    "(fast_cnn<w>: widths w, 4w, 4w), "
                                    "resnet<depth> (depth 6n+2, the paper's resnet32), fcn, "
                                    "resnet1d (series) or mlp.")
    # None: the dataset's recipe (RECIPES) decides.
    augment: Optional[bool] = _setting(
        None, "Random crops (crop_padding black pixels) and flips of the positives; auto: on "
              "for colour images.")
    crop_padding: Optional[int] = _setting(
        None, "Pixels of padding the random crops may shift by; auto: 2 for fast_cnn, 4 "
              "otherwise.")
    optimizer: Optional[str] = _setting(
        None, "adam, or sgd (Nesterov momentum); auto: sgd for fast_cnn, adam otherwise.",
        OPTIMIZERS)
    momentum: Optional[float] = _setting(None, "optimizer=sgd: its momentum; auto: 0.85 for "
                                               "fast_cnn, 0.9 otherwise.")
    learning_rate: Optional[float] = _setting(None, "Peak learning rate; auto: 1.5 for fast_cnn "
                                                    "(SGD, batches of 1024), 1e-3 otherwise.")
    weight_decay: Optional[float] = _setting(
        None, "Decoupled weight decay (w -= lr * wd * w); auto: 0 for grey images, 0.0089 for "
              "fast_cnn, 0.05 for resnet<depth> on colour ones.")
    label_smoothing: Optional[float] = _setting(
        None, "Training targets put this much probability evenly on all classes; auto: 0.2 "
              "for fast_cnn, 0 otherwise.")
    test_time_flips: Optional[bool] = _setting(
        None, "Classify an image by the mean of its and its mirror image's logits (evaluation, "
              "predict, the exported classify; not synthesis); auto: on for fast_cnn.")
    lr_schedule: Optional[str] = _setting(
        None, "constant, or cosine (to 0 over the run's epochs); auto: constant for grey "
              "images, cosine for colour ones.", LR_SCHEDULES)
    lr_warmup: Optional[float] = _setting(
        None, "lr_schedule=cosine: the first fraction of the run rises linearly from a fifth "
              "of learning_rate to it; auto: 0.23 for fast_cnn, 0 otherwise.")
    introspection_warmup_steps: Optional[int] = _setting(
        None, "Plain cross-entropy steps before synthesis begins; auto: 0.")
    seed: int = _setting(0, "Seed of the whole run.")
    prior_examples: int = _setting(10_000, "Training images p_0's moments are first fitted to.")
    samples_per_class: int = _setting(8, "Images per class in samples.png.")
    sample_every: Optional[int] = _setting(
        None, "Synthesize, draw and measure samples.png every N epochs and after the last; "
              "auto: about 10 times a run (every epoch for runs of up to 10).")
    init_pool_from: Optional[str] = _setting(
        None, "Seed the pool with the newest entries stored in this pool directory.")
    skip_corrupt_shards: bool = _setting(False, "Skip corrupt shards of init_pool_from with a "
                                                "warning.")
    jit_compile: Union[bool, str] = _setting("auto", "XLA: auto, true or false (auto is off "
                                                     "under a strategy).")
    strategy: str = _setting("none", "tf.distribute strategy: none (one device), mirrored "
                                     "(every GPU of this host; without GPUs every logical CPU "
                                     "device, see --cpu_devices), or multi_worker (one process "
                                     "per host, the cluster in TF_CONFIG).", STRATEGIES)
    steps_per_execution: int = _setting(1, "Training steps per compiled call.")
    value_range: tuple = _model("value_range", "low,high of the model's inputs.")
    mode: str = _model("mode", "icn, or baseline (plain cross-entropy).", ("icn", "baseline"))
    synthesis: Optional[str] = _model(
        "synthesis", "Where training chains start: data (the batch's images; the default, fresh "
                     "with one class), fresh (p_0), persistent (pool entries), or mixed (half "
                     "data, half fresh).",
        ("fresh", "persistent", "data", "mixed"))
    prior: str = _model("prior", "p_0, the chains' start distribution (pca: a Gaussian with the "
                        "per-pixel moments and the top principal components of the "
                        "prior_examples).", prior_lib.PRIORS)
    step_size: Optional[float] = _setting(
        None, "Langevin step size epsilon; auto: 0.5 for grey images, 5 for colour ones (a "
              "ResNet's input gradients are smaller).")
    noise_stddev: float = _model("noise_stddev", "Langevin noise sigma.")
    num_langevin_steps: int = _model("num_langevin_steps", "Langevin steps per chain in training.")
    synthesis_batch_size: int = _model("synthesis_batch_size", "New pseudo-negatives per step.")
    pool_capacity: int = _model("pool_capacity", "Pseudo-negatives kept on the device.")
    pool_batch_size: int = _model("pool_batch_size", "Pool entries replayed per step.")
    reinit_probability: float = _model("reinit_probability",
                                       "Persistent synthesis: chance a chain restarts from p_0.")
    introspective_weight: float = _model("introspective_weight",
                                         "Weight alpha of the introspective loss.")
    stop_probability: Optional[float] = _model("stop_probability",
                                               "Stop a chain once q(k|x) reaches this.")
    synthesis_steps: Optional[int] = _setting(
        None, "Default Langevin steps of synthesize() and the exported signature; auto: 100 for "
              "fast_cnn, 20 for other image networks, 50 for series and tables.")
    synthesis_metric: Optional[str] = _setting(
        None, "The metric of synthesize()'s chains (and the exported signature's): pixel (plain "
              "Langevin steps, as in training) or prior (steps preconditioned by p_0's "
              "covariance: smoother samples; docs/algorithm.md). Training does not depend on "
              "it. auto: prior for fast_cnn, pixel otherwise.", METRICS)
    unknown_score: str = _model("unknown_score", "What says unknown: logsumexp, max_logit or "
                                "max_softmax (keras_icn.open_set).",
                                ("logsumexp", "max_logit", "max_softmax"))

    def __post_init__(self):
        for name in ("epochs", "batch_size", "steps_per_execution", "samples_per_class",
                     "sample_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1. Received: {name}={getattr(self, name)}")
        if self.series_length is not None and self.series_length < 2:
            raise ValueError(f"series_length must be >= 2. Received: "
                             f"series_length={self.series_length}")
        if (self.train_examples is not None and self.batch_size is not None
                and self.train_examples < self.batch_size):
            raise ValueError(f"train_examples must be at least batch_size={self.batch_size}. "
                             f"Received: train_examples={self.train_examples}")
        for name, choices in (("optimizer", OPTIMIZERS), ("lr_schedule", LR_SCHEDULES),
                              ("strategy", STRATEGIES), ("synthesis_metric", METRICS)):
            if getattr(self, name) not in (None,) + choices:
                raise ValueError(f"{name} must be one of {choices}. "
                                 f"Received: {name}={getattr(self, name)!r}")
        if self.imbalance_ratio != 1.0 and self.examples_per_class is None:
            raise ValueError("imbalance_ratio needs examples_per_class (the count of class 0). "
                             f"Received: imbalance_ratio={self.imbalance_ratio}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0. Received: "
                             f"learning_rate={self.learning_rate}")
        if not 0.0 < self.unknown_true_positive_rate <= 1.0:
            raise ValueError(f"unknown_true_positive_rate must be in (0, 1]. Received: "
                             f"unknown_true_positive_rate={self.unknown_true_positive_rate}")
        for name, low, high in (("momentum", 0.0, 1.0), ("lr_warmup", 0.0, 1.0),
                                ("label_smoothing", 0.0, 1.0)):
            value = getattr(self, name)
            if value is not None and not low <= value < high:
                raise ValueError(f"{name} must be in [{low:g}, {high:g}). Received: "
                                 f"{name}={value}")
        if self.crop_padding is not None and self.crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0. Received: "
                             f"crop_padding={self.crop_padding}")
        if self.weight_decay is not None and not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0. Received: "
                             f"weight_decay={self.weight_decay}")

    @classmethod
    def tiny(cls, **overrides):
        """Seconds-long settings for tests and smoke runs."""
        settings = dict(train_examples=256, validation_examples=0, epochs=1, batch_size=64,
                        num_langevin_steps=3,
                        synthesis_batch_size=8, pool_batch_size=8, pool_capacity=64,
                        synthesis_steps=5, samples_per_class=2, prior_examples=256)
        return cls(**{**settings, **overrides})

    def model_kwargs(self):
        return {name: getattr(self, name) for name in _MODEL_FIELDS}

    def resolve(self, input_shape, num_classes=None):
        """This config with every None setting taken from the recipe for
        `input_shape` (`recipe_name`); with `num_classes=1` (one known class)
        also `synthesis`, which then can only be "fresh" or "persistent"."""
        recipe = RECIPES[recipe_name(input_shape, self.network)]
        config = dataclasses.replace(self, **{name: value for name, value in recipe.items()
                                              if getattr(self, name) is None})
        if num_classes == 1:
            config = dataclasses.replace(config, synthesis=one_class_synthesis(self.synthesis))
        if config.sample_every is None:  # the monitor's synthesis can cost more than an
            # epoch of a small data set (PLAID: 88 series x 50 steps, 8 s; the epoch 1.5 s)
            config = dataclasses.replace(config, sample_every=math.ceil(config.epochs / 10))
        return config


def one_class_synthesis(synthesis):
    """The chain start of a one-class run: the model's own default for one class
    ("fresh") where `synthesis` is None. With two or more classes None stays None
    (the model's "data"), as every config.json written before one class was
    possible has it."""
    if synthesis in FROM_DATA:
        raise ValueError(f'synthesis="{synthesis}" needs at least 2 known classes: its chains '
                         "move training examples toward another class. Received: "
                         f"synthesis='{synthesis}' with one known class. Use synthesis=fresh "
                         "(chains from p_0, the default for one class) or "
                         "synthesis=persistent, or train on more classes.")
    return "fresh" if synthesis is None else synthesis


def auto_validation_examples(total):
    """How many of `total` training examples `validation_examples=auto` holds out:
    10%, at most 5000, and none where that would be under 100."""
    count = min(total // 10, 5000)
    return count if count >= 100 else 0


def open_dataset(config):
    """The `keras_icn.datasets.Dataset` a config trains on."""
    return datasets.open_dataset(config.dataset, config.data_dir, config.download,
                                 config.label_column, config.known_classes, config.series_length)


def resolve(config):
    """`config.resolve()` for its dataset's input shape and number of classes."""
    dataset = open_dataset(config)
    return config.resolve(dataset.input_shape, dataset.num_classes)


def to_json(config):
    """A config as the JSON values `config.json` holds (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_json(values):
    """The Config a `config.json` holds (lists back to tuples)."""
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ValueError(f"Unknown settings {unknown} (written by another version of keras-icn?); "
                         "the settings are the fields of keras_icn.config.Config.")
    values = {**ADDED_SETTINGS, **values}  # a run recorded before they existed
    for name in ("value_range", "known_classes"):
        if values.get(name) is not None:
            values = {**values, name: tuple(values[name])}
    return Config(**values)


def evaluation_split(config, which):
    """The TFDS split a run is evaluated on: `which` is "test" or "validation", or
    "train", the split its training examples come from (with `examples_per_class`,
    a superset of them)."""
    if which == "test":
        return "test"
    if which not in ("validation", "train"):
        raise ValueError(f"split must be 'test', 'validation' or 'train'. Received: "
                         f"split={which!r}")
    train, validation = open_dataset(config).training_splits(config.train_examples,
                                                             config.validation_examples)
    if which == "train":
        return train
    if validation is None:
        raise ValueError("This run holds out no validation examples (validation_examples=0): "
                         "evaluate it on split 'test', or train with validation_examples=N.")
    return validation


# Parsing ------------------------------------------------------------------------

_FIELDS = {field.name: field for field in dataclasses.fields(Config)}
_TYPES = typing.get_type_hints(Config)


def parse_value(name, text):
    """The value of Config field `name` that the string `text` stands for.

    Numbers, strings and bools as written; `none` or `auto` for a setting whose
    None means "the default decides"; `low,high` for value_range; jit_compile
    takes true, false or auto.
    """
    if name not in _FIELDS:
        raise ValueError(f"Unknown setting {name!r}; the settings are the fields of "
                         f"keras_icn.config.Config: {', '.join(_FIELDS)}.")
    kind = _TYPES[name]
    lowered = text.strip().lower()
    if name == "jit_compile":
        if lowered not in ("auto", "true", "false"):
            raise ValueError(f"jit_compile must be auto, true or false. Received: {text!r}")
        return "auto" if lowered == "auto" else lowered == "true"
    if name == "known_classes":
        if lowered in ("none", "auto", "all"):
            return None
        try:
            return tuple(int(part) for part in text.split(","))
        except ValueError:
            raise ValueError(f"known_classes must be labels separated by commas, e.g. 0,1,2. "
                             f"Received: {text!r}") from None
    if name == "value_range":
        try:
            low, high = (float(part) for part in text.split(","))
        except ValueError:
            raise ValueError(f"value_range must be low,high (two numbers). "
                             f"Received: {text!r}") from None
        return (low, high)
    if type(None) in typing.get_args(kind):  # Optional[X]
        if lowered in ("none", "auto"):
            return None
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    try:
        if kind is bool:
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError
            return lowered in ("true", "1")
        value = kind(text)
    except ValueError:
        wanted = {bool: "true or false", int: "an integer", float: "a number"}.get(kind, "a string")
        raise ValueError(f"{name} must be {wanted}. Received: {name}={text!r}") from None
    choices = _FIELDS[name].metadata["choices"]
    if choices and value not in choices:
        raise ValueError(f"{name} must be one of {choices}. Received: {name}={text!r}")
    return value


def parse_settings(items):
    """`["field=value", ...]` -> a dict of Config fields and values (`parse_value`)."""
    settings = {}
    for item in items:
        name, equals, text = item.partition("=")
        if not equals:
            raise ValueError(f"A setting is field=value. Received: {item!r}")
        settings[name.strip()] = parse_value(name.strip(), text)
    return settings


def override(config, items):
    """`config` with the settings `["field=value", ...]` replaced (`parse_settings`)."""
    return dataclasses.replace(config, **parse_settings(items))


# Flags ----------------------------------------------------------------------------

def _flag_kind(name):
    """How a field is a flag: "enum", "bool", "int", "float", "str", or "parsed"
    (a string flag read by `parse_value`: Optional settings, value_range, jit_compile)."""
    kind = _TYPES[name]
    if _FIELDS[name].metadata["choices"] and _FIELDS[name].default is not None:
        return "enum"  # with a None default: parsed, so it takes `auto`
    return kind.__name__ if kind in (bool, int, float, str) else "parsed"


def define_flags(flag_values=flags.FLAGS):
    """Defines one absl flag per Config field, with its default and help text.

    Bools are boolean flags (`--download`, `--nodownload`); settings whose
    default is None take `auto` (or leave them unset) for the default.
    """
    define = {"enum": flags.DEFINE_enum, "bool": flags.DEFINE_bool,
              "int": flags.DEFINE_integer, "float": flags.DEFINE_float,
              "str": flags.DEFINE_string, "parsed": flags.DEFINE_string}
    for name, field in _FIELDS.items():
        kind, default = _flag_kind(name), field.default
        if kind == "parsed" and default is not None:
            default = (",".join(str(v) for v in default) if isinstance(default, tuple)
                       else str(default))
        extra = {"enum_values": list(field.metadata["choices"])} if kind == "enum" else {}
        define[kind](name=name, default=default, help=field.metadata["help"],
                     flag_values=flag_values, **extra)


def from_flags(flag_values=flags.FLAGS):
    """The Config the flags of `define_flags` hold; ValueError names a bad value."""
    values = {}
    for name in _FIELDS:
        value = flag_values[name].value
        values[name] = (parse_value(name, value) if _flag_kind(name) == "parsed"
                        and value is not None else value)
    return Config(**values)

"""train(config, workdir): a whole training run, as `tools/train.py` runs it.

The run writes into `workdir`: `config.json` (first), TensorBoard logs, and
after every epoch `model.keras`, the pool's new shards and `samples.png` (and
a copy of it per epoch in `samples/`); at
the end the SavedModel `export/1/` and `metrics.json`.
"""

import dataclasses
import inspect
import json
import math
import os
import shutil
import time
from typing import Optional, Union

import keras
from absl import logging

from keras_icn import callbacks, data, files, networks, pool_io, serving
from keras_icn.model import IntrospectiveClassifier

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
)
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine")

# The training recipe of a dataset, by its images: the values that settings left
# as None take. "grey" is what the MNIST runs were tuned with; "colour" is the
# CIFAR recipe (augmented positives, decoupled weight decay, a cosine schedule),
# with Adam, which beat SGD with momentum on a validation split (see the README).
RECIPES = {
    "grey": dict(augment=False, optimizer="adam", learning_rate=1e-3, weight_decay=0.0,
                 lr_schedule="constant", introspection_warmup_steps=0,
                 step_size=_MODEL_DEFAULTS["step_size"]),
    "colour": dict(augment=True, optimizer="adam", learning_rate=1e-3, weight_decay=0.05,
                   lr_schedule="cosine", introspection_warmup_steps=0, step_size=5.0),
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of a run; `config.json` records it."""

    dataset: str = "mnist"
    data_dir: Optional[str] = None
    download: bool = True  # fetch a dataset data_dir lacks (fails in seconds offline)
    train_examples: Optional[int] = None  # the first N training examples; None: all
    validation_examples: int = 0  # the last N training examples, held out; 0: none
    epochs: int = 10
    batch_size: int = 128
    network: str = "auto"  # "mnist_cnn", "resnet<depth>"; auto: ResNet-32 for 32x32 images
    # None: the dataset's recipe (RECIPES) decides.
    augment: Optional[bool] = None  # random crops (4-pixel padding) and flips of the positives
    optimizer: Optional[str] = None  # "adam" or "sgd" (momentum 0.9, Nesterov)
    learning_rate: Optional[float] = None
    weight_decay: Optional[float] = None  # decoupled, applied by the optimizer
    lr_schedule: Optional[str] = None  # "constant" or "cosine" (to 0 over the run's epochs)
    introspection_warmup_steps: Optional[int] = None
    seed: int = 0
    prior_examples: int = 10_000  # training images p_0's moments are first fitted to
    samples_per_class: int = 8
    init_pool_from: Optional[str] = None  # a pool directory to seed the pool with
    skip_corrupt_shards: bool = False  # when reading init_pool_from
    jit_compile: Union[bool, str] = "auto"
    steps_per_execution: int = 1
    value_range: tuple = _MODEL_DEFAULTS["value_range"]
    mode: str = _MODEL_DEFAULTS["mode"]
    synthesis: Optional[str] = _MODEL_DEFAULTS["synthesis"]
    prior: str = _MODEL_DEFAULTS["prior"]
    step_size: Optional[float] = None  # Langevin epsilon; None: the recipe's
    noise_stddev: float = _MODEL_DEFAULTS["noise_stddev"]
    num_langevin_steps: int = _MODEL_DEFAULTS["num_langevin_steps"]
    synthesis_batch_size: int = _MODEL_DEFAULTS["synthesis_batch_size"]
    pool_capacity: int = _MODEL_DEFAULTS["pool_capacity"]
    pool_batch_size: int = _MODEL_DEFAULTS["pool_batch_size"]
    reinit_probability: float = _MODEL_DEFAULTS["reinit_probability"]
    introspective_weight: float = _MODEL_DEFAULTS["introspective_weight"]
    stop_probability: Optional[float] = _MODEL_DEFAULTS["stop_probability"]
    synthesis_steps: int = _MODEL_DEFAULTS["synthesis_steps"]

    def __post_init__(self):
        for name in ("epochs", "batch_size", "steps_per_execution", "samples_per_class"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1. Received: {name}={getattr(self, name)}")
        if self.train_examples is not None and self.train_examples < self.batch_size:
            raise ValueError(f"train_examples must be at least batch_size={self.batch_size}. "
                             f"Received: train_examples={self.train_examples}")
        for name, choices in (("optimizer", OPTIMIZERS), ("lr_schedule", LR_SCHEDULES)):
            if getattr(self, name) not in (None,) + choices:
                raise ValueError(f"{name} must be one of {choices}. "
                                 f"Received: {name}={getattr(self, name)!r}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0. Received: "
                             f"learning_rate={self.learning_rate}")
        if self.weight_decay is not None and not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0. Received: "
                             f"weight_decay={self.weight_decay}")

    @classmethod
    def tiny(cls, **overrides):
        """Seconds-long settings for tests and smoke runs."""
        settings = dict(train_examples=256, epochs=1, batch_size=64, num_langevin_steps=3,
                        synthesis_batch_size=8, pool_batch_size=8, pool_capacity=64,
                        synthesis_steps=5, samples_per_class=2, prior_examples=256)
        return cls(**{**settings, **overrides})

    def model_kwargs(self):
        return {name: getattr(self, name) for name in _MODEL_FIELDS}

    def resolve(self, image_shape):
        """This config with every None setting taken from the recipe for `image_shape`:
        "colour" for 3 channels, else "grey"."""
        recipe = RECIPES["colour" if image_shape[-1] == 3 else "grey"]
        return dataclasses.replace(self, **{name: value for name, value in recipe.items()
                                            if getattr(self, name) is None})


def resolve(config):
    """`config.resolve()` for its dataset's image shape (read from the dataset's info)."""
    info = data.dataset_info(config.dataset, config.data_dir, config.download)
    return config.resolve(info.features["image"].shape)


def evaluation_split(config, which):
    """The TFDS split a run is evaluated on: `which` is "test" or "validation"."""
    if which == "test":
        return "test"
    if which != "validation":
        raise ValueError(f"split must be 'test' or 'validation'. Received: split={which!r}")
    info = data.dataset_info(config.dataset, config.data_dir)
    validation = data.training_splits(info, config.train_examples, config.validation_examples)[1]
    if validation is None:
        raise ValueError("This run holds out no validation examples (validation_examples=0): "
                         "evaluate it on split 'test', or train with validation_examples=N.")
    return validation


def make_optimizer(config, total_steps):
    """The optimizer of a resolved config, with its schedule over `total_steps`."""
    learning_rate = config.learning_rate
    if config.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, total_steps)
    weight_decay = config.weight_decay or None  # None: no decay op at all
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True,
                                    weight_decay=weight_decay)
    return keras.optimizers.Adam(learning_rate, weight_decay=weight_decay)


def build_model(config, image_shape, num_classes, total_steps):
    """The compiled `IntrospectiveClassifier` a resolved config describes."""
    model = IntrospectiveClassifier(
        networks.build(config.network, image_shape, num_classes), num_classes,
        seed=config.seed, **config.model_kwargs(),
    )
    model.compile(optimizer=make_optimizer(config, total_steps),
                  jit_compile=config.jit_compile,
                  steps_per_execution=config.steps_per_execution)
    return model


# Settings a resumed run may change; any other change needs start_over.
_RESUMABLE = ("epochs", "data_dir", "download", "skip_corrupt_shards")


def load_json(path):
    with open(path) as f:
        return json.load(f)


def config_json(config):
    """A config as the JSON values `config.json` holds (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def check_resumable(config, workdir):
    """Raises ValueError if `workdir` holds a run with other settings than `config`
    (a resolved config: see `resolve`)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(os.path.join(workdir, "model.keras")) or not os.path.exists(path):
        return  # nothing to resume: e.g. a run that stopped at a bad setting
    previous = load_json(path)
    current = config_json(config)
    resumable = _RESUMABLE if current["lr_schedule"] == "constant" else (
        tuple(k for k in _RESUMABLE if k != "epochs"))  # the schedule spans the epochs
    changed = sorted(k for k in current if k not in resumable and previous.get(k) != current[k])
    if changed:
        details = ", ".join(f"{k}: {previous.get(k)!r} -> {current[k]!r}" for k in changed)
        raise ValueError(f"{workdir} holds a run with other settings ({details}). Resume it with "
                         "its settings, use another --workdir, or pass --start_over to discard it.")


def _discard_run(workdir):
    for name in ("model.keras", "metrics.json", "samples.png"):
        if os.path.exists(os.path.join(workdir, name)):
            os.remove(os.path.join(workdir, name))
    for name in ("pool", "tensorboard", "export", "samples"):
        shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)


class Checkpoint(keras.callbacks.Callback):
    """Saves the model (weights, optimizer, p_0, pool counters) atomically each epoch.

    Keras' `ModelCheckpoint` writes in place; a run killed mid-write would
    leave a broken file to resume from. Skips the save once training diverged.
    """

    def __init__(self, path, guard):
        super().__init__()
        self.path, self.guard = path, guard

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.error:
            return
        temporary = files.temporary_path(self.path)
        self.model.save(temporary)
        files.commit(temporary, self.path)


def train(config, workdir, start_over=False):
    """Trains, evaluates and saves one model; returns the metrics dict.

    A `workdir` that holds an earlier run with the same settings (`epochs` may
    grow) is resumed from its `model.keras`, which is saved after every epoch:
    weights, optimizer state, epoch, random-number state and the pool (refilled
    from its shards) continue where they were. `start_over=True` discards the
    earlier run instead.

    Raises:
        ValueError: bad settings or data, or a workdir holding another run.
        RuntimeError: training diverged; `metrics.json` then holds the history
            up to that step and the message, and no model is saved.
    """
    info = data.dataset_info(config.dataset, config.data_dir, config.download)
    image_shape = info.features["image"].shape
    num_classes = info.features["label"].num_classes
    config = config.resolve(image_shape)
    os.makedirs(workdir, exist_ok=True)
    if start_over:
        _discard_run(workdir)
    else:
        check_resumable(config, workdir)
    files.write_json(os.path.join(workdir, "config.json"), dataclasses.asdict(config))
    keras.utils.set_random_seed(config.seed)

    split, validation_split = data.training_splits(info, config.train_examples,
                                                   config.validation_examples)
    steps_per_epoch = info.splits[split].num_examples // config.batch_size
    train_split = data.load_split(config.dataset, split, config.data_dir, config.value_range)

    def evaluation_data(name):
        return data.eval_pipeline(
            data.load_split(config.dataset, name, config.data_dir, config.value_range),
            config.batch_size)

    test_data = evaluation_data("test")
    validation_data = evaluation_data(validation_split) if validation_split else None

    model_path = os.path.join(workdir, "model.keras")
    pool_dir = os.path.join(workdir, "pool")
    resuming = os.path.exists(model_path)
    if resuming:
        model = keras.models.load_model(model_path)
        initial_epoch = int(model.optimizer.iterations.numpy()) // steps_per_epoch
        logging.info("Resuming %s at epoch %d", workdir, initial_epoch)
    else:
        model = build_model(config, image_shape, num_classes, config.epochs * steps_per_epoch)
        model.adapt(data.train_pipeline(train_split, config.batch_size, config.seed),
                    max_batches=math.ceil(config.prior_examples / config.batch_size))
        initial_epoch = 0
    # Also for a fresh model: sets aside shards of a run killed before its first checkpoint.
    pool_io.restore_pool(model.pool, pool_dir)
    if config.init_pool_from and not resuming:
        pool_io.import_pool(model.pool, config.init_pool_from, pool_dir,
                            config.skip_corrupt_shards)
    # Entries seeded from init_pool_from are always the run's first shard.
    imported = (pool_io.inspect_shard(pool_io.shard_paths(pool_dir)[0])[0]
                if config.init_pool_from else 0)
    augmentation = data.crop_and_flip(config.value_range) if config.augment else None
    train_data = data.train_pipeline(train_split, config.batch_size, config.seed, initial_epoch,
                                     config.epochs, augmentation)

    guard = callbacks.DivergenceGuard()
    run_callbacks = [
        keras.callbacks.TensorBoard(os.path.join(workdir, "tensorboard")),
        guard,
        callbacks.PoolWriter(pool_dir),  # before the checkpoint that counts its entries
        Checkpoint(model_path, guard),
        callbacks.SampleGrid(os.path.join(workdir, "samples.png"), config.samples_per_class,
                             log_dir=os.path.join(workdir, "tensorboard", "samples"),
                             seed=config.seed, class_names=info.features["label"].names,
                             epoch_path=os.path.join(workdir, "samples", "epoch-{epoch:03d}.png")),
    ]
    logging.info("Training %s on %s (%s) for %d epochs into %s", config.mode, config.dataset,
                 split, config.epochs, workdir)
    start = time.perf_counter()
    history = model.fit(train_data, epochs=config.epochs, initial_epoch=initial_epoch,
                        steps_per_epoch=steps_per_epoch, validation_data=validation_data,
                        callbacks=run_callbacks,
                        shuffle=False, verbose=1)  # the pipeline shuffles
    train_seconds = time.perf_counter() - start

    metrics = {
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / max(len(history.epoch), 1),
        "initial_epoch": initial_epoch,
        "epochs": initial_epoch + len(history.epoch),
        "history": {name: [float(v) for v in values] for name, values in history.history.items()},
        "pool_size": int(model.pool.size),
        "pseudo_negatives_made": int(model.pool.count.numpy()) - imported,
        "pseudo_negatives_imported": imported,
    }
    if guard.error:
        files.write_json(os.path.join(workdir, "metrics.json"), {**metrics, "error": guard.error})
        raise RuntimeError(guard.error)
    for name, split_data in (("test", test_data), ("validation", validation_data)):
        if split_data is not None:
            result = model.evaluate(split_data, return_dict=True, verbose=0)
            metrics.update({f"{name}_loss": result["loss"], f"{name}_accuracy": result["accuracy"],
                            f"{name}_error": 1.0 - result["accuracy"]})
    serving.export_saved_model(model, os.path.join(workdir, "export", "1"), overwrite=True)
    files.write_json(os.path.join(workdir, "metrics.json"), metrics)
    logging.info("Test error %.4f; wrote %s", metrics["test_error"], workdir)
    return metrics

"""train(config, workdir): a whole training run, as `tools/train.py` runs it.

Build (or load the checkpoint of) the model, fit it with the callbacks that
write the run's files, evaluate, export. What the run writes where is in
`keras_icn.rundir`; the settings are a `keras_icn.config.Config`.
"""

import dataclasses
import hashlib
import math
import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from keras_icn import callbacks, data, networks, pool_io, replicas, rundir, serving
from keras_icn import config as config_lib
from keras_icn.model import IntrospectiveClassifier

# Real training images the synthesis monitor measures samples against.
MONITOR_EXAMPLES = 1000


def make_optimizer(config, total_steps):
    """The optimizer of a resolved config, with its schedule over `total_steps`."""
    learning_rate = config.learning_rate
    if config.lr_schedule == "cosine" and config.lr_warmup:
        # Linearly from a fifth of the peak to it (airbench's warm-up), then cosine to 0.
        warmup_steps = int(config.lr_warmup * total_steps)
        learning_rate = keras.optimizers.schedules.CosineDecay(
            learning_rate / 5, total_steps - warmup_steps, warmup_target=learning_rate,
            warmup_steps=warmup_steps)
    elif config.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, total_steps)
    weight_decay = config.weight_decay or None  # None: no decay op at all
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=config.momentum, nesterov=True,
                                    weight_decay=weight_decay)
    return keras.optimizers.Adam(learning_rate, weight_decay=weight_decay)


def make_strategy(name):
    """The `tf.distribute` strategy a config names ("none": the default strategy).

    "mirrored" replicates over this host's GPUs, or, on a machine without any,
    over its logical CPU devices (split the CPU with
    `tf.config.set_logical_device_configuration`, e.g. `tools/train.py
    --cpu_devices=2`). "multi_worker" is MultiWorkerMirroredStrategy over the
    cluster in `TF_CONFIG`.
    """
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("strategy=multi_worker needs TF_CONFIG: the cluster and this "
                             "worker's task (see docs/scaling.md).")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"strategy must be one of {config_lib.STRATEGIES}. "
                     f"Received: strategy={name!r}")


def build_model(config, input_shape, num_classes, total_steps, **units):
    """The compiled `IntrospectiveClassifier` a resolved config describes;
    `units` (`standardization`, `value_range`) override the config's for array
    datasets (`keras_icn.datasets.Dataset.model_units`)."""
    model = IntrospectiveClassifier(
        networks.build(config.network, input_shape, num_classes), num_classes,
        seed=config.seed, **{**config.model_kwargs(), **units},
    )
    model.compile(optimizer=make_optimizer(config, total_steps),
                  jit_compile=config.jit_compile,
                  steps_per_execution=config.steps_per_execution)
    return model


def train(config, workdir, start_over=False):
    """Trains, evaluates and saves one model; returns the metrics dict.

    A `workdir` that holds an earlier run with the same settings (`epochs` may
    grow) is resumed from its `model.keras`, which is saved after every epoch:
    weights, optimizer state, epoch, random-number state and the pool (refilled
    from its shards) continue where they were. `start_over=True` discards the
    earlier run instead.

    With `strategy="multi_worker"` every worker process calls this with the same
    config and `workdir`, a directory they all can read (a shared file system).
    Only the chief writes there; the others write into a temporary directory,
    deleted when they return.

    Raises:
        ValueError: bad settings or data, or a workdir holding another run.
        RuntimeError: training diverged; `metrics.json` then holds the history
            up to that step and the message, and no model is saved.
    """
    strategy = make_strategy(config.strategy)  # first: before TensorFlow runs any op
    shared = rundir.RunDir(workdir)
    if replicas.is_chief(strategy):
        return _train(config, strategy, shared, shared, start_over)
    # Named by task and workdir, so a worker started again after a crash deletes
    # what its killed predecessor left.
    resolver = strategy.cluster_resolver
    key = hashlib.sha1(os.path.abspath(workdir).encode()).hexdigest()[:12]
    own = rundir.RunDir(os.path.join(
        tempfile.gettempdir(), f"keras-icn-{resolver.task_type}{resolver.task_id}-{key}"))
    if tf.io.gfile.exists(own.path):
        tf.io.gfile.rmtree(own.path)
    try:
        return _train(config, strategy, shared, own, start_over)
    finally:
        if tf.io.gfile.exists(own.path):
            tf.io.gfile.rmtree(own.path)


def _train(config, strategy, shared, run, start_over):
    """`train` in one worker: reads `shared` (the run's directory), writes `run`
    (the same directory on the chief, a temporary one on other workers)."""
    chief = shared is run
    dataset = config_lib.open_dataset(config)
    input_shape, num_classes = dataset.input_shape, dataset.num_classes
    config = config.resolve(input_shape, num_classes)
    if config.validation_examples is None:  # auto: enough to calibrate "unknown" on
        config = dataclasses.replace(config, validation_examples=(
            config_lib.auto_validation_examples(dataset.training_total)))
    if chief:
        shared.start(config, start_over)
    replicas.barrier(strategy)  # every worker sees the chief's checkpoint, or none
    keras.utils.set_random_seed(config.seed)

    split, validation_split = dataset.training_splits(config.train_examples,
                                                      config.validation_examples)
    # Series and tables: standardized with the training split's statistics, and
    # chains bounded to its range (or not); the model keeps both.
    units = dataset.model_units(split, bounded=config.value_bounds == "data")
    num_train = dataset.num_examples(split)
    positions = None
    if config.examples_per_class:  # a per-class (maybe long-tailed) subset
        positions = data.class_subset(
            dataset.labels(split),
            data.class_counts(num_classes, config.examples_per_class, config.imbalance_ratio))
        num_train = len(positions)
    if num_train < config.batch_size:
        raise ValueError(f"The training set has {num_train} examples, fewer than batch_size="
                         f"{config.batch_size}: lower batch_size.")
    if config.batch_size < strategy.num_replicas_in_sync:  # each replica needs examples
        raise ValueError(f"batch_size={config.batch_size} is smaller than the "
                         f"{strategy.num_replicas_in_sync} replicas in sync: use at least "
                         f"{strategy.num_replicas_in_sync}.")
    steps_per_epoch = num_train // config.batch_size

    # Build, or load the checkpoint (weights, optimizer, p_0, pool counters).
    imported = 0
    if shared.has_checkpoint:
        with strategy.scope():
            model = keras.models.load_model(shared.file(rundir.MODEL))
        initial_epoch = int(model.optimizer.iterations.numpy()) // steps_per_epoch
        logging.info("Resuming %s at epoch %d", shared.path, initial_epoch)
        if config.init_pool_from:  # entries seeded from it are the run's first shard
            imported = pool_io.inspect_shard(pool_io.shard_paths(shared.file(rundir.POOL))[0])[0]
    else:
        with strategy.scope():
            model = build_model(config, input_shape, num_classes,
                                config.epochs * steps_per_epoch, **units)
    # The model's units: pixels scaled to value_range, or raw values standardized.
    train_split = dataset.examples(split, model)
    if positions is not None:
        train_split = data.select(train_split, positions)

    def evaluation_data(name):
        return _for_strategy(data.eval_pipeline(dataset.examples(name, model), config.batch_size),
                             strategy)

    test_data = evaluation_data("test")
    validation_data = evaluation_data(validation_split) if validation_split else None
    if not shared.has_checkpoint:
        model.adapt(data.train_pipeline(train_split, config.batch_size, config.seed),
                    max_batches=math.ceil(config.prior_examples / config.batch_size))
        initial_epoch = 0
        if config.init_pool_from:  # written as the run's first shard
            imported = pool_io.import_pool(model.pool, config.init_pool_from,
                                           run.file(rundir.POOL), config.skip_corrupt_shards)
    augmentation = (data.crop_and_flip(config.value_range, config.crop_padding)
                    if config.augment else None)
    if augmentation is not None and dataset.kind != "image":
        raise ValueError(f"augment=true crops and flips images; {config.dataset} holds "
                         f"{dataset.kind} inputs of shape {input_shape}. Use augment=false.")
    train_data = _for_strategy(data.train_pipeline(
        train_split, config.batch_size, config.seed, initial_epoch, config.epochs, augmentation),
        strategy)

    # Fit: the callbacks write the run's files (and the pool writer restores the pool).
    guard = callbacks.DivergenceGuard()
    pool_writer = callbacks.PoolWriter(
        run.file(rundir.POOL), restore_from=None if chief else shared.file(rundir.POOL))
    real_images, real_labels = next(iter(train_split.batch(MONITOR_EXAMPLES)))
    run_callbacks = [
        guard,
        pool_writer,
        # Before TensorBoard, which then logs the measures it adds.
        callbacks.SynthesisMonitor(run.file(rundir.SAMPLES), config.samples_per_class,
                                   log_dir=run.file(rundir.TENSORBOARD_SAMPLES),
                                   seed=config.seed, class_names=dataset.class_names,
                                   epoch_path=run.file(rundir.EPOCH_SAMPLES),
                                   real_images=real_images, real_labels=real_labels,
                                   every=config.sample_every),
        keras.callbacks.TensorBoard(run.file(rundir.TENSORBOARD)),
        # Last: an epoch with a checkpoint has all its files (a resumed run skips it).
        callbacks.Checkpoint(run.file(rundir.MODEL), guard, pool_writer),
    ]
    logging.info("Training %s on %s (%s) for %d epochs into %s", config.mode, config.dataset,
                 split, config.epochs, run.path)
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
        "history": {name: [float(np.mean(v)) for v in values]
                    for name, values in history.history.items()},
        "pool_size": int(model.pool.size),
        "pseudo_negatives_made": int(model.pool.count.numpy()) - imported,
        "pseudo_negatives_imported": imported,
    }
    if guard.error:
        run.write_json(rundir.METRICS, {**metrics, "error": guard.error})
        raise RuntimeError(guard.error)

    # Calibrate "unknown" on the held-out examples, then evaluate and export.
    if validation_split:
        inputs = dataset.arrays(validation_split, model)[0]
        metrics["unknown_threshold"] = model.calibrate_unknown(
            inputs, config.unknown_true_positive_rate)
        test_inputs = dataset.arrays("test", model)[0]
        metrics["test_known_kept"] = float(np.mean(~model.predict_open_set(test_inputs)["is_unknown"]))
        if chief:  # the checkpoint keeps the threshold
            callbacks.save_model(model, run.file(rundir.MODEL))
    else:
        logging.warning("No validation examples: the unknown threshold stays uncalibrated (only "
                        "non-finite inputs are unknown). Calibrate it on held-out examples of the "
                        "known classes with tools/calibrate.py.")
    for name, split_data in (("test", test_data), ("validation", validation_data)):
        if split_data is not None:
            result = model.evaluate(split_data, return_dict=True, verbose=0)
            accuracy = float(np.mean(result["accuracy"]))
            metrics.update({f"{name}_loss": float(np.mean(result["loss"])),
                            f"{name}_accuracy": accuracy, f"{name}_error": 1.0 - accuracy})
    serving.export_saved_model(model, run.export(1), overwrite=True)
    run.write_json(rundir.METRICS, metrics)
    logging.info("Test error %.4f; wrote %s", metrics["test_error"], run.path)
    return metrics


def _for_strategy(dataset, strategy):
    """Under MultiWorkerMirroredStrategy every worker reads the whole dataset and
    takes its share of each global batch (TFDS splits are not sharded by file).
    (Every batch of the pipelines is whole, so no replica's share is empty.)"""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)

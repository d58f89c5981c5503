"""Trains an introspective classifier on a TFDS image-classification dataset.

    python tools/train.py --dataset=mnist --data_dir=../shared/datasets/tfds \
        --epochs=1 --train_examples=2000 --workdir=/tmp/w

Writes config.json, model.keras (after every epoch), metrics.json,
samples.png, the pool's TFRecord shards (pool/) and TensorBoard logs into
--workdir; run it again on the same --workdir to resume. Every setting of
keras_icn.training.Config is a flag.
"""

import dataclasses
import sys

from absl import app, flags

from keras_icn import training

_DEFAULTS = training.Config()
FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/mnist", "Directory the run writes into; an earlier run there is resumed.")
flags.DEFINE_bool("start_over", False, "Discard the run in --workdir instead of resuming it.")
flags.DEFINE_string("dataset", _DEFAULTS.dataset, "TFDS image-classification dataset.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir (default: TFDS_DATA_DIR or ~/tensorflow_datasets).")
flags.DEFINE_bool("download", _DEFAULTS.download, "Let TFDS download a dataset the data_dir lacks (needs internet; fails in seconds without). --nodownload: never.")
flags.DEFINE_integer("train_examples", None, "Train on the first N training examples (default: all).")
flags.DEFINE_integer("validation_examples", _DEFAULTS.validation_examples, "Hold out the last N training examples for validation.")
flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Training epochs.")
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Positives per training step.")
flags.DEFINE_string("network", _DEFAULTS.network, "auto (MNIST CNN; ResNet-32 for 32x32 images), mnist_cnn, or resnet<depth> (depth 6n+2).")
# Default None: the dataset's recipe (keras_icn.training.RECIPES) decides.
flags.DEFINE_enum("augment", "auto", ["auto", "true", "false"], "Random crops (4-pixel padding) and flips of the positives; auto: on for colour images.")
flags.DEFINE_enum("optimizer", None, list(training.OPTIMIZERS), "adam, or sgd (momentum 0.9, Nesterov). Default: adam.")
flags.DEFINE_float("learning_rate", None, "Default: 1e-3.")
flags.DEFINE_float("weight_decay", None, "Decoupled weight decay (w -= lr * wd * w). Default: 0 for grey images, 0.05 for colour ones.")
flags.DEFINE_enum("lr_schedule", None, list(training.LR_SCHEDULES), "Default: constant for grey images, cosine for colour ones.")
flags.DEFINE_integer("introspection_warmup_steps", None, "Plain cross-entropy steps before synthesis begins. Default: 0.")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of the whole run.")
flags.DEFINE_integer("prior_examples", _DEFAULTS.prior_examples, "Training images p_0 is fitted to first.")
flags.DEFINE_integer("samples_per_class", _DEFAULTS.samples_per_class, "Images per class in samples.png.")
flags.DEFINE_string("init_pool_from", None, "Seed the pool with the newest entries stored in this pool directory.")
flags.DEFINE_bool("skip_corrupt_shards", False, "Skip corrupt shards of --init_pool_from with a warning.")
flags.DEFINE_string("jit_compile", str(_DEFAULTS.jit_compile), "XLA: auto, true or false.")
flags.DEFINE_integer("steps_per_execution", _DEFAULTS.steps_per_execution, "Training steps per compiled call.")
flags.DEFINE_list("value_range", [str(v) for v in _DEFAULTS.value_range], "low,high of the model's inputs.")
flags.DEFINE_enum("mode", _DEFAULTS.mode, ["icn", "baseline"], "icn, or baseline (plain cross-entropy).")
flags.DEFINE_enum("synthesis", _DEFAULTS.synthesis, ["fresh", "persistent", "data"], "Where training chains start: the batch's images (default; fresh with one class), p_0, or pool entries.")
flags.DEFINE_enum("prior", _DEFAULTS.prior, ["gaussian", "uniform"], "p_0, the chains' start distribution.")
flags.DEFINE_float("step_size", None, "Langevin step size epsilon. Default: 0.5 for grey images, 5 for colour ones (a ResNet's input gradients are smaller).")
flags.DEFINE_float("noise_stddev", _DEFAULTS.noise_stddev, "Langevin noise sigma.")
flags.DEFINE_integer("num_langevin_steps", _DEFAULTS.num_langevin_steps, "Langevin steps per chain in training.")
flags.DEFINE_integer("synthesis_batch_size", _DEFAULTS.synthesis_batch_size, "New pseudo-negatives per step.")
flags.DEFINE_integer("pool_capacity", _DEFAULTS.pool_capacity, "Pseudo-negatives kept on the device.")
flags.DEFINE_integer("pool_batch_size", _DEFAULTS.pool_batch_size, "Pool entries replayed per step.")
flags.DEFINE_float("reinit_probability", _DEFAULTS.reinit_probability, "Persistent: chance a chain restarts.")
flags.DEFINE_float("introspective_weight", _DEFAULTS.introspective_weight, "Weight alpha of the introspective loss.")
flags.DEFINE_float("stop_probability", _DEFAULTS.stop_probability, "Stop a chain once q(k|x) reaches this.")
flags.DEFINE_integer("synthesis_steps", _DEFAULTS.synthesis_steps, "Default Langevin steps of synthesize().")


def _auto_bool(name, value, auto="auto"):
    lowered = value.lower()
    if lowered not in ("auto", "true", "false"):
        raise app.UsageError(f"--{name} must be auto, true or false. Received: {value!r}")
    return auto if lowered == "auto" else lowered == "true"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    values = {field.name: getattr(FLAGS, field.name) for field in dataclasses.fields(training.Config)}
    values["jit_compile"] = _auto_bool("jit_compile", FLAGS.jit_compile)
    values["augment"] = _auto_bool("augment", FLAGS.augment, auto=None)
    values["value_range"] = tuple(float(v) for v in FLAGS.value_range)
    try:
        config = training.Config(**values)
        training.train(config, FLAGS.workdir, start_over=FLAGS.start_over)
    except (ValueError, RuntimeError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    app.run(main)

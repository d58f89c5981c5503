"""Trains an introspective classifier on a TFDS image-classification dataset.

    python tools/train.py --dataset=mnist --data_dir=../shared/datasets/tfds \
        --epochs=1 --train_examples=2000 --workdir=/tmp/w

Writes config.json, model.keras (after every epoch), metrics.json,
samples.png, the pool's TFRecord shards (pool/), TensorBoard logs and the
SavedModel export/1 into --workdir (see keras_icn.rundir); run it again on the
same --workdir to resume. Every field of keras_icn.config.Config is a flag
(`--helpfull` lists them); settings whose default is `auto` follow the
dataset's recipe.
"""

import sys

import tensorflow as tf
from absl import app, flags

from keras_icn import config, training

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/mnist", "Directory the run writes into; an earlier run there is resumed.")
flags.DEFINE_bool("start_over", False, "Discard the run in --workdir instead of resuming it.")
flags.DEFINE_integer("cpu_devices", 1, "Split the CPU into N logical devices, so --strategy=mirrored can run on a machine without GPUs.")
config.define_flags(FLAGS)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.cpu_devices < 1:
        raise app.UsageError(f"--cpu_devices must be >= 1. Received: {FLAGS.cpu_devices}")
    if FLAGS.cpu_devices > 1:  # before TensorFlow initializes its devices
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0],
            [tf.config.LogicalDeviceConfiguration()] * FLAGS.cpu_devices)
    try:
        training.train(config.from_flags(FLAGS), FLAGS.workdir, start_over=FLAGS.start_over)
    except (ValueError, RuntimeError) as error:
        sys.exit(f"error: {error}")
    except tf.errors.UnavailableError as error:  # multi_worker: a peer stopped
        sys.exit(f"error: another worker stopped ({error.message.splitlines()[0]}). Start every "
                 "worker again with the same command: the run resumes from its last epoch.")


if __name__ == "__main__":
    app.run(main)

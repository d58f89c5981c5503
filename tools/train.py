"""Trains an introspective classifier on a TFDS image-classification dataset.

    python tools/train.py --dataset=mnist --data_dir=../shared/datasets/tfds \\
        --epochs=1 --train_examples=2000 --workdir=/tmp/w

Writes config.json, model.keras (after every epoch), metrics.json,
samples.png, the pool's TFRecord shards (pool/), TensorBoard logs and the
SavedModel export/1 into --workdir (see keras_icn.rundir); run it again on the
same --workdir to resume. Every field of keras_icn.config.Config is a flag;
settings whose default is `auto` follow the dataset's recipe. `--help` lists
them by group, `--helpfull` with absl's own help.
"""

import re
import sys

import machine

ONEDNN_REASON = machine.prefer_onednn()  # before TensorFlow is imported

import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from keras_icn import config, training  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/mnist", "Directory the run writes into; an earlier run there is resumed.")
flags.DEFINE_bool("start_over", False, "Discard the run in --workdir instead of resuming it.")
flags.DEFINE_integer("cpu_devices", 1, "Split the CPU into N logical devices, so --strategy=mirrored can run on a machine without GPUs.")
config.define_flags(FLAGS)

# What `--help` shows, by group; every flag of this tool is in one of them.
HELP_GROUPS = {
    "data": ("dataset", "label_column", "series_length", "data_dir", "download", "train_examples",
             "validation_examples", "value_bounds",
             "examples_per_class", "imbalance_ratio", "augment", "crop_padding", "value_range"),
    "network": ("network", "test_time_flips", "jit_compile"),
    "introspection": ("mode", "synthesis", "prior", "prior_examples", "step_size",
                      "noise_stddev", "num_langevin_steps", "synthesis_batch_size",
                      "pool_capacity", "pool_batch_size", "reinit_probability",
                      "introspective_weight", "stop_probability", "synthesis_steps",
                      "synthesis_metric", "introspection_warmup_steps", "init_pool_from", "skip_corrupt_shards"),
    "unknown": ("known_classes", "unknown_score", "unknown_true_positive_rate"),
    "training": ("epochs", "batch_size", "optimizer", "momentum", "learning_rate",
                 "weight_decay", "lr_schedule", "lr_warmup", "label_smoothing", "seed"),
    "output": ("workdir", "start_over", "samples_per_class", "sample_every"),
    "scaling": ("strategy", "cpu_devices", "steps_per_execution"),
}


def _first_clause(text):
    """`text` up to its first ". " or "; " outside parentheses."""
    depth = 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and text[index:index + 2] in (". ", "; "):
            return text[:index]
    return text.rstrip(".")


def grouped_help():
    """`--help`: the docstring's first line, then each group's flags, one line each."""
    lines = [__doc__.strip().splitlines()[0], "",
             "Usage: python tools/train.py --dataset=mnist [--flag=value ...]"]
    for group, names in HELP_GROUPS.items():
        lines += ["", f"{group}:"]
        for name in names:
            flag = FLAGS[name]
            default = "auto" if flag.default is None else flag.default_as_str.strip("'")
            text = re.sub(r"^<[^>]*>: ", "", flag.help)  # absl's enum prefix
            lines.append(f"  {f'--{name}={default}':<36} {_first_clause(text)}")
    lines += ["", "--helpfull: every flag with absl's full help (and absl's own flags)."]
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.cpu_devices < 1:
        raise app.UsageError(f"--cpu_devices must be >= 1. Received: {FLAGS.cpu_devices}")
    if FLAGS.cpu_devices > 1:  # before TensorFlow initializes its devices
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0],
            [tf.config.LogicalDeviceConfiguration()] * FLAGS.cpu_devices)
    logging.info(machine.describe(ONEDNN_REASON))
    try:
        training.train(config.from_flags(FLAGS), FLAGS.workdir, start_over=FLAGS.start_over)
    except (ValueError, RuntimeError) as error:
        sys.exit(f"error: {error}")
    except tf.errors.UnavailableError as error:  # multi_worker: a peer stopped
        sys.exit(f"error: another worker stopped ({error.message.splitlines()[0]}). Start every "
                 "worker again with the same command: the run resumes from its last epoch.")


if __name__ == "__main__":
    if {"--help", "-h", "--helpshort", "-?"} & set(sys.argv[1:]):
        print(grouped_help())
        sys.exit(0)
    app.run(main)

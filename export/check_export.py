"""Judges an exported SavedModel the way TF Serving would run it.

    python export/check_export.py --export_dir=/tmp/w/export/1
    python export/check_export.py --export_dir=/models/icn/3 --dataset=cifar10 \
        --data_dir=../shared/datasets/tfds --samples_per_class=10 --output=/tmp/check.json

A fresh Python process that imports TensorFlow alone (export/served_probe.py)
loads the export and sends it the dataset's test examples (`classify`) and
--samples_per_class requests per class (`synthesize`, seeds --seed,
--seed + 1, ...), then `classify` on the samples it returned. This tool reports
the test accuracy through `classify`, the share of examples it calls unknown,
how often the samples are classified as requested, and, with --quality, the
samples' quality (Fréchet distance, diversity, precision/recall, memorisation)
in the dataset's reference classifier's features against the test examples,
beside the same measures for real test examples, as tools/evaluate.py measures
a Keras model. The dataset comes from the workdir an export lies in
(<workdir>/export/N), or from --dataset.
"""

import dataclasses
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from absl import app, flags

from keras_icn import config as config_lib
from keras_icn import datasets, evaluation, files, images, reference, rundir

FLAGS = flags.FLAGS
flags.DEFINE_string("export_dir", None, "A SavedModel version directory, e.g. <workdir>/export/1.", required=True)
flags.DEFINE_string("dataset", None, "TFDS dataset or bundled source; default the workdir's.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir; default the workdir's.")
flags.DEFINE_integer("examples", None, "Classify only the test split's first N examples.")
flags.DEFINE_integer("samples_per_class", 10, "synthesize requests per class.")
flags.DEFINE_integer("seed", 0, "Seed of the first synthesize request.")
flags.DEFINE_bool("quality", True, "Measure the samples in the reference classifier's features.")
reference.define_flags()
flags.DEFINE_string("output", None, "Where to write the JSON (also printed).")
flags.DEFINE_string("grid", None, "Where to write a PNG of the samples, a row per class.")

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "served_probe.py")
RAW_PIXELS = (0.0, 255.0)  # what an image export takes and returns


class _RawPixels:
    """What `datasets.Dataset.arrays` asks of a model, for raw 0..255 pixels."""
    value_range = RAW_PIXELS


def open_dataset(export_dir):
    """The export's dataset and its run's config (None without a workdir)."""
    workdir = os.path.dirname(os.path.dirname(os.path.abspath(export_dir)))
    run = rundir.RunDir(workdir)
    config = run.read_config() if run.exists(rundir.CONFIG) else None
    name = FLAGS.dataset or (config and config.dataset)
    if not name:
        raise app.UsageError(f"{export_dir} is not in a tools/train.py workdir "
                             "(<workdir>/export/N): pass --dataset.")
    if config is not None and FLAGS.dataset in (None, config.dataset):
        return config_lib.open_dataset(dataclasses.replace(
            config, data_dir=FLAGS.data_dir or config.data_dir)), config
    return datasets.open_dataset(name, FLAGS.data_dir), None


def serve(export_dir, requests):
    """`served_probe.py` in a fresh process: its replies and its JSON report."""
    with tempfile.TemporaryDirectory() as scratch:
        requests_path, replies_path = (os.path.join(scratch, n) for n in ("q.npz", "r.npz"))
        np.savez(requests_path, **requests)
        done = subprocess.run([sys.executable, PROBE, export_dir, requests_path, replies_path],
                              capture_output=True, text=True)
        if done.returncode:
            raise ValueError(f"TensorFlow could not serve {export_dir}:\n{done.stderr[-3000:]}")
        with np.load(replies_path) as replies:
            return dict(replies), json.loads(done.stdout.strip().splitlines()[-1])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.samples_per_class < (4 if FLAGS.quality else 1):
        raise app.UsageError(f"--samples_per_class must be >= 4 with --quality (its k-NN "
                             f"measures use k=3), >= 1 without. Received: {FLAGS.samples_per_class}")
    if not os.path.isfile(os.path.join(FLAGS.export_dir, "saved_model.pb")):
        sys.exit(f"error: {FLAGS.export_dir} holds no SavedModel (saved_model.pb): pass a "
                 "version directory such as <workdir>/export/1.")
    try:
        dataset, config = open_dataset(FLAGS.export_dir)
        units = _RawPixels if dataset.kind == "image" else None
        real, real_labels = dataset.arrays("test", units)
    except ValueError as error:
        sys.exit(f"error: {error}")
    real, real_labels = real[:FLAGS.examples], real_labels[:FLAGS.examples]
    requested = np.repeat(np.arange(dataset.num_classes, dtype=np.int32), FLAGS.samples_per_class)
    seeds = FLAGS.seed + np.arange(len(requested), dtype=np.int32)
    try:
        replies, probe = serve(FLAGS.export_dir, {"inputs": real, "labels": requested,
                                                  "seeds": seeds})
    except ValueError as error:
        sys.exit(f"error: {error}")
    samples = replies[f"synthesized_{probe['input_name']}"]
    results = {
        "export_dir": FLAGS.export_dir, "dataset": dataset.name, "examples": len(real_labels),
        "test_accuracy": float(np.mean(replies["classes"] == real_labels)),
        "unknown_rate": float(np.mean(replies["is_unknown"])),
        "synthesized": len(requested),
        "synthesis_accuracy": float(np.mean(replies["samples_classes"] == requested)),
        "synthesis_score": float(np.mean(replies["synthesized_scores"])),
        "served_by": probe,
    }
    if FLAGS.quality:
        options = {"label_column": config and config.label_column,
                   "series_length": config and config.series_length}
        training, _ = dataset.arrays(
            config_lib.evaluation_split(config, "train") if config else "train", units)
        results["synthesis_quality"] = evaluation.sample_quality(
            reference.from_flags(dataset.name, FLAGS.data_dir or (config and config.data_dir),
                                 **options),
            samples, requested, real, real_labels, training, RAW_PIXELS)
    if FLAGS.grid:
        figure = images.sample_figure(samples, dataset.num_classes, RAW_PIXELS,
                                      dataset.class_names)
        files.write_bytes(FLAGS.grid, images.encode_png(figure))
    if FLAGS.output:
        files.write_json(FLAGS.output, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    app.run(main)

"""Chooses synthesis settings by measurement: what p_0, the chains' metric, step
size and length do to the samples of trained runs (images, series or tables).

    python tools/synthesis_sweep.py --workdirs=/tmp/full-icn,/tmp/full-baseline \
        --priors=gaussian,pca --steps=10,20,50 --output_dir=results/mnist_synthesis

For every run, p_0 kind, metric (`synthesis_metric`), step size and number of
Langevin steps it synthesizes
--samples_per_class images of every class (p_0 fitted, as tools/train.py does,
to the run's first prior_examples training images; chains as in synthesize(),
the same seed for every setting) and measures them as tools/evaluate.py does:
the share classified as requested, and their quality in the reference
classifier's features (Fréchet distance, diversity, k-NN precision and recall,
nearest-training-image ratio) against the run's held-out validation examples
(train it with --validation_examples; --split=test only for a final report).
Writes sweep.json, sweep.md (one row per setting, and real images for
comparison) and a sample grid per setting into --output_dir.
"""

import itertools
import os
import sys

import machine

ONEDNN_REASON = machine.prefer_onednn()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from keras_icn import config as config_lib  # noqa: E402
from keras_icn import evaluation, files, images, randomness, reference, rundir  # noqa: E402
from keras_icn.model import METRICS  # noqa: E402
from keras_icn.prior import PRIORS, PixelPrior  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("workdirs", None, "tools/train.py workdirs to measure.", required=True)
flags.DEFINE_list("priors", ["gaussian", "pca"], f"p_0 kinds, of {PRIORS}.")
flags.DEFINE_list("steps", ["10", "20", "50"], "Langevin steps of synthesis.")
flags.DEFINE_list("metrics", ["pixel"], "Metrics of the chains, of pixel, prior (keras_icn.sampler).")
flags.DEFINE_list("step_sizes", [], "Langevin step sizes; default the run's step_size.")
flags.DEFINE_integer("samples_per_class", 50, "Synthesized samples per class and setting.")
flags.DEFINE_enum("split", "validation", ["validation", "test"], "The real images compared with.")
reference.define_flags()
flags.DEFINE_integer("seed", 0, "Seed of p_0's draws and of the chains.")
flags.DEFINE_string("output_dir", None, "Where sweep.json, sweep.md and the grids go.", required=True)

MEASURES = ("frechet_distance", "diversity", "precision", "recall", "nearest_training_ratio")


def measure_run(workdir, reference_model):
    """The rows of one run: one per (prior, metric, step size, steps), then real images'."""
    run = rundir.RunDir(workdir)
    config = run.read_config()
    model = keras.models.load_model(run.file(rundir.MODEL))
    # Images, series or tables, in the model's units.
    dataset = config_lib.open_dataset(config)
    real, real_labels = dataset.arrays(config_lib.evaluation_split(config, FLAGS.split), model)
    training = dataset.arrays(config_lib.evaluation_split(config, "train"), model)[0]
    measure = evaluation.sample_quality_measure(reference_model, real, real_labels, training,
                                                model.value_range)
    labels = np.repeat(np.arange(model.num_classes), FLAGS.samples_per_class)
    start_seed, chain_seed = randomness.split(tf.constant([FLAGS.seed, 0], tf.int64), 2)
    rows, name = [], os.path.basename(os.path.normpath(workdir))
    for kind in FLAGS.priors:
        prior = PixelPrior(model.input_shape, kind=kind, value_range=model.value_range)
        prior.adapt(training[:config.prior_examples])
        start = prior.sample(len(labels), start_seed)
        for metric, step_size, steps in itertools.product(
                FLAGS.metrics, [float(s) for s in FLAGS.step_sizes] or [model.step_size],
                [int(s) for s in FLAGS.steps]):
            model.step_size = step_size
            samples = model.run_chains(start, tf.constant(labels, tf.int32), steps, chain_seed,
                                       prior if metric == "prior" else None).numpy()
            as_requested = float(np.mean(np.argmax(model(samples), -1) == labels))
            rows.append({"run": name, "prior": kind, "metric": metric, "step_size": step_size,
                         "steps": steps, "as_requested": as_requested,
                         **measure(samples, labels)["overall"]})
            shown = samples.reshape(model.num_classes, -1, *samples.shape[1:])[:, :10]
            grid = images.sample_figure(shown.reshape(-1, *samples.shape[1:]), model.num_classes,
                                        model.value_range)
            files.write_bytes(os.path.join(
                FLAGS.output_dir, f"{name}-{kind}-{metric}-{step_size:g}-{steps}.png"),
                images.encode_png(grid))
    rows.append({"run": name, "prior": "real images", "metric": None, "step_size": None,
                 "steps": None, "as_requested": None,
                 **measure(*evaluation.real_stand_ins(real, real_labels, labels))["overall"]})
    return rows


def markdown(rows):
    lines = ["| run | p_0 | metric | step size | steps | as requested | " + " | ".join(MEASURES)
             + " |", "|---|---|---|---|---|---|" + "---|" * len(MEASURES)]
    for row in rows:
        cells = [row["run"], row["prior"], row["metric"] or "",
                 "" if row["step_size"] is None else f"{row['step_size']:g}", row["steps"] or "",
                 "" if row["as_requested"] is None else f"{row['as_requested']:.1%}"]
        lines.append("| " + " | ".join(str(c) for c in cells + [
            f"{row[m]:.3f}" for m in MEASURES]) + " |")
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.info(machine.describe(ONEDNN_REASON))
    if set(FLAGS.metrics) - set(METRICS):
        raise app.UsageError(f"--metrics takes {', '.join(METRICS)}. Received: {FLAGS.metrics}")
    if FLAGS.samples_per_class < 4:
        raise app.UsageError("--samples_per_class must be >= 4 (the k-NN measures use k=3). "
                             f"Received: {FLAGS.samples_per_class}")
    tf.io.gfile.makedirs(FLAGS.output_dir)
    rows, models = [], {}
    for workdir in FLAGS.workdirs:
        config = rundir.RunDir(workdir).read_config()
        if config.dataset not in models:
            models[config.dataset] = reference.from_flags(
                config.dataset, config.data_dir, label_column=config.label_column,
                series_length=config.series_length)
        try:
            rows += measure_run(workdir, models[config.dataset])
        except ValueError as error:
            sys.exit(f"error: {workdir}: {error}")
    files.write_json(os.path.join(FLAGS.output_dir, "sweep.json"), {
        "flags": {name: getattr(FLAGS, name) for name in
                  ("workdirs", "priors", "metrics", "step_sizes", "steps", "samples_per_class",
                   "split", "seed")},
        "rows": rows})
    files.write_bytes(os.path.join(FLAGS.output_dir, "sweep.md"), markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    app.run(main)

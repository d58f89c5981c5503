"""Evaluates a trained model: test error, calibration, FGSM robustness, synthesis, OOD.

    python tools/evaluate.py --workdir=/tmp/w --data_dir=../shared/datasets/tfds
    python tools/evaluate.py --model=/tmp/w/model.keras --dataset=mnist \
        --transfer_from=/tmp/baseline/model.keras --ood_dataset=fashion_mnist

On the dataset's test split (or, with --split=validation, on the examples the
run held out from training) it reports the error; the expected calibration
error (15 equal-width bins); the error on FGSM adversarial examples at each
--epsilons (white-box on the model, and transferred from --transfer_from) and how
well the log-sum-exp of the logits tells them from clean images (AUROC); how
often synthesized samples are classified as their target class; and the AUROC
of two out-of-distribution scores (max softmax probability, log-sum-exp of the
logits) for test images against uniform noise and against --ood_dataset; and
the synthesized samples' quality (fidelity, diversity, precision/recall,
memorisation; see keras_icn/quality.py) in the feature space of the dataset's
reference classifier, which is trained into --reference_dir when missing, beside
the same measures for real test images. Writes <workdir>/eval.json (or
--output) and prints a table.
"""

import dataclasses
import os
import sys

import machine

ONEDNN_REASON = machine.prefer_onednn()  # before TensorFlow is imported

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from keras_icn import config as config_lib  # noqa: E402
from keras_icn import evaluation, files, reference, rundir  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A tools/train.py workdir (model.keras, config.json).")
flags.DEFINE_string("model", None, "A .keras file to evaluate (instead of --workdir).")
flags.DEFINE_string("dataset", None, "TFDS dataset; default the workdir's.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir; default the workdir's.")
flags.DEFINE_enum("split", "test", ["test", "validation"], "test, or the run's held-out validation examples (needs --workdir).")
flags.DEFINE_integer("examples", None, "Use the split's first N examples (default: all).")
flags.DEFINE_list("epsilons", ["0.05", "0.1", "0.2"], "FGSM step sizes, in the model's value range; a fraction like 8/255 works.")
flags.DEFINE_string("transfer_from", None, "A .keras model (or workdir) to craft transferred FGSM examples with.")
flags.DEFINE_string("ood_dataset", None, "A second TFDS dataset of the same image shape, as out-of-distribution data.")
flags.DEFINE_integer("samples_per_class", 50, "Synthesized samples per class.")
flags.DEFINE_bool("quality", True, "Measure the samples' quality with the reference classifier.")
reference.define_flags()
flags.DEFINE_integer("batch_size", 500, "Evaluation batch size.")
flags.DEFINE_integer("seed", 0, "Seed of the noise images and of synthesis.")
flags.DEFINE_string("output", None, "Where to write the JSON; default <workdir>/eval.json.")


def load(path):
    return keras.models.load_model(
        rundir.RunDir(path).file(rundir.MODEL) if os.path.isdir(path) else path)


def print_table(results):
    print(f"{results['dataset']} {results['split']}, {results['examples']} examples")
    print(f"  error                      {results['error']:.4f}")
    print(f"  ECE (15 bins)              {results['ece']:.4f}")
    for kind in ("fgsm_error", "fgsm_transfer_error", "fgsm_detection_auroc",
                 "fgsm_transfer_detection_auroc"):
        for epsilon, value in results.get(kind, {}).items():
            print(f"  {kind.replace('_', ' '):<29} eps={epsilon:<5} {value:.4f}")
    print(f"  synthesized, as requested  {results['synthesis_accuracy']:.4f}")
    if "synthesis_quality" in results:
        print(f"  sample quality (reference features)  {'samples':>9} {'real images':>12}")
        measures = results["synthesis_quality"]
        for name, value in measures["samples"]["overall"].items():
            print(f"    {name:<33} {value:>9.4f} {measures['real_images']['overall'][name]:>12.4f}")
    for name, scores in results["ood_auroc"].items():
        for score, value in scores.items():
            print(f"  OOD AUROC vs {name:<14} {score:<11} {value:.4f}")
    open_set = results.get("open_set")  # classes held out of training: known against unknown
    for score in ("max_softmax", "logsumexp", "max_logit") if open_set else ():
        print(f"  open-set AUROC {score:<11}       {open_set[score]['auroc']:.4f} (FPR at 95% "
              f"TPR {open_set[score]['fpr_at_95_tpr']:.4f}, OSCR {open_set[score]['oscr']:.4f})")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.info(machine.describe(ONEDNN_REASON))
    if (FLAGS.workdir is None) == (FLAGS.model is None):
        raise app.UsageError("Pass exactly one of --workdir or --model.")
    if FLAGS.split == "validation" and not FLAGS.workdir:
        raise app.UsageError("--split=validation needs --workdir: its config says which "
                             "examples the run held out.")
    try:
        config = rundir.RunDir(FLAGS.workdir).read_config() if FLAGS.workdir else None
    except (ValueError, tf.errors.NotFoundError) as error:
        sys.exit(f"error: {FLAGS.workdir} is not a tools/train.py workdir: {error}")
    dataset = FLAGS.dataset or (config and config.dataset)
    if not dataset:
        raise app.UsageError("Pass --dataset (the model file does not say which it was trained on).")
    if FLAGS.quality and FLAGS.samples_per_class < 4:
        raise app.UsageError(f"--quality needs --samples_per_class >= 4 (its k-NN measures use "
                             f"k=3). Received: {FLAGS.samples_per_class}; or pass --noquality.")
    output = FLAGS.output or (os.path.join(FLAGS.workdir, "eval.json") if FLAGS.workdir else None)
    try:
        model = load(FLAGS.workdir or FLAGS.model)
        data_dir = FLAGS.data_dir or (config and config.data_dir)
        run = config and dataclasses.replace(config, data_dir=data_dir)
        # The run's own reading of an array source (a CSV's label column, a series length).
        options = {"label_column": config and config.label_column,
                   "series_length": config and config.series_length}
        split = "test" if FLAGS.split == "test" else config_lib.evaluation_split(
            run, "validation")
        results = evaluation.evaluate(
            model, dataset, data_dir, split, max_examples=FLAGS.examples,
            epsilons=[evaluation.parse_epsilon(e) for e in FLAGS.epsilons],
            transfer_from=load(FLAGS.transfer_from) if FLAGS.transfer_from else None,
            ood_dataset=FLAGS.ood_dataset, samples_per_class=FLAGS.samples_per_class,
            batch_size=FLAGS.batch_size, seed=FLAGS.seed,
            reference=reference.from_flags(dataset, data_dir, **options) if FLAGS.quality else None,
            training_split=config_lib.evaluation_split(run, "train") if run else "train",
            known_classes=config and config.known_classes, **options)
    except ValueError as error:
        sys.exit(f"error: {error}")
    if output:
        files.write_json(output, results)
    print_table(results)


if __name__ == "__main__":
    app.run(main)

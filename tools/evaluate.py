"""Evaluates a trained model: test error, calibration, FGSM robustness, synthesis, OOD.

    python tools/evaluate.py --workdir=/tmp/w --data_dir=../shared/datasets/tfds
    python tools/evaluate.py --model=/tmp/w/model.keras --dataset=mnist \
        --transfer_from=/tmp/baseline/model.keras --ood_dataset=fashion_mnist

On the dataset's test split it reports the test error; the expected calibration
error (15 equal-width bins); the error on FGSM adversarial examples at each
--epsilons (white-box on the model, and transferred from --transfer_from); how
often synthesized samples are classified as their target class; and the AUROC
of two out-of-distribution scores (max softmax probability, log-sum-exp of the
logits) for test images against uniform noise and against --ood_dataset. Writes
<workdir>/eval.json (or --output) and prints a table.
"""

import json
import os
import sys

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from keras_icn import data, evaluation, files

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A tools/train.py workdir (model.keras, config.json).")
flags.DEFINE_string("model", None, "A .keras file to evaluate (instead of --workdir).")
flags.DEFINE_string("dataset", None, "TFDS dataset; default the workdir's.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir; default the workdir's.")
flags.DEFINE_integer("test_examples", None, "Use the first N test examples (default: all).")
flags.DEFINE_list("epsilons", ["0.05", "0.1", "0.2"], "FGSM step sizes, in the model's value range.")
flags.DEFINE_string("transfer_from", None, "A .keras model (or workdir) to craft transferred FGSM examples with.")
flags.DEFINE_string("ood_dataset", None, "A second TFDS dataset of the same image shape, as out-of-distribution data.")
flags.DEFINE_integer("samples_per_class", 20, "Synthesized samples per class.")
flags.DEFINE_integer("batch_size", 500, "Evaluation batch size.")
flags.DEFINE_integer("seed", 0, "Seed of the noise images and of synthesis.")
flags.DEFINE_string("output", None, "Where to write the JSON; default <workdir>/eval.json.")


def load(path):
    return keras.models.load_model(os.path.join(path, "model.keras") if os.path.isdir(path) else path)


def test_arrays(dataset, split, data_dir, value_range):
    batches = list(data.load_split(dataset, split, data_dir, value_range).batch(10_000))
    return (np.concatenate([b[0].numpy() for b in batches]),
            np.concatenate([b[1].numpy() for b in batches]))


def logits_of(network, images):
    return np.concatenate([network(images[i:i + FLAGS.batch_size], training=False).numpy()
                           for i in range(0, len(images), FLAGS.batch_size)])


def fgsm_error(source, target, images, labels, epsilon, value_range):
    wrong = 0
    for i in range(0, len(images), FLAGS.batch_size):
        adversarial = evaluation.fgsm(source, images[i:i + FLAGS.batch_size],
                                      labels[i:i + FLAGS.batch_size], epsilon, value_range)
        predicted = np.argmax(target(adversarial, training=False).numpy(), axis=1)
        wrong += int(np.sum(predicted != labels[i:i + FLAGS.batch_size]))
    return wrong / len(images)


def evaluate(model, dataset, data_dir):
    value_range = model.value_range
    split = "test" if FLAGS.test_examples is None else f"test[:{FLAGS.test_examples}]"
    data.dataset_info(dataset, data_dir)  # clear errors for unknown or missing data
    images, labels = test_arrays(dataset, split, data_dir, value_range)
    logits = logits_of(model.network, images)
    probabilities = tf.nn.softmax(logits).numpy()
    results = {"dataset": dataset, "test_examples": len(labels),
               "test_error": float(np.mean(np.argmax(logits, 1) != labels)),
               "ece": evaluation.expected_calibration_error(probabilities, labels)}
    epsilons = [float(e) for e in FLAGS.epsilons]
    results["fgsm_error"] = {str(e): fgsm_error(model.network, model.network, images, labels,
                                                e, value_range) for e in epsilons}
    if FLAGS.transfer_from:
        source = load(FLAGS.transfer_from).network
        results["fgsm_transfer_error"] = {
            str(e): fgsm_error(source, model.network, images, labels, e, value_range)
            for e in epsilons}

    wanted = np.repeat(np.arange(model.num_classes), FLAGS.samples_per_class)
    samples = model.synthesize(wanted, seed=FLAGS.seed).numpy()
    results["synthesis_accuracy"] = float(np.mean(
        np.argmax(logits_of(model.network, samples), 1) == wanted))

    in_scores = evaluation.ood_scores(logits)
    noise = np.random.default_rng(FLAGS.seed).uniform(*value_range, images.shape).astype("float32")
    others = {"uniform_noise": noise}
    if FLAGS.ood_dataset:
        data.dataset_info(FLAGS.ood_dataset, data_dir)
        others[FLAGS.ood_dataset] = test_arrays(FLAGS.ood_dataset, split, data_dir, value_range)[0]
    results["ood_auroc"] = {
        name: {score: evaluation.auroc(in_scores[score], out_scores[score])
               for score in in_scores}
        for name, out_scores in ((n, evaluation.ood_scores(logits_of(model.network, x)))
                                 for n, x in others.items())}
    return results


def print_table(results):
    print(f"{results['dataset']} test split, {results['test_examples']} examples")
    print(f"  test error                 {results['test_error']:.4f}")
    print(f"  ECE (15 bins)              {results['ece']:.4f}")
    for kind in ("fgsm_error", "fgsm_transfer_error"):
        for epsilon, error in results.get(kind, {}).items():
            print(f"  {kind.replace('_', ' '):<20} eps={epsilon:<5} {error:.4f}")
    print(f"  synthesized, as requested  {results['synthesis_accuracy']:.4f}")
    for name, scores in results["ood_auroc"].items():
        for score, value in scores.items():
            print(f"  OOD AUROC vs {name:<14} {score:<11} {value:.4f}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if (FLAGS.workdir is None) == (FLAGS.model is None):
        raise app.UsageError("Pass exactly one of --workdir or --model.")
    config = {}
    if FLAGS.workdir:
        with open(os.path.join(FLAGS.workdir, "config.json")) as f:
            config = json.load(f)
    dataset = FLAGS.dataset or config.get("dataset")
    if not dataset:
        raise app.UsageError("Pass --dataset (the model file does not say which it was trained on).")
    output = FLAGS.output or (os.path.join(FLAGS.workdir, "eval.json") if FLAGS.workdir else None)
    try:
        model = load(FLAGS.workdir or FLAGS.model)
        results = evaluate(model, dataset, FLAGS.data_dir or config.get("data_dir"))
    except ValueError as error:
        sys.exit(f"error: {error}")
    if output:
        files.write_json(output, results)
    print_table(results)


if __name__ == "__main__":
    app.run(main)

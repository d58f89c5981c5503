"""Trains `baseline` and `icn` on the same data, seeds and settings, evaluates both,
and writes a Markdown table and a JSON file of mean ± std over the seeds.

    python tools/study.py --data_dir=../shared/datasets/tfds --seeds=0,1,2 --epochs=5 \
        --results_dir=results/mnist_study

Choose settings on held-out training examples, never on the test split:

    python tools/study.py --data_dir=../shared/datasets/tfds --seeds=0,1 --epochs=2 \
        --validation_examples=10000 --split=validation \
        --icn_settings=synthesis=persistent --results_dir=/tmp/sweep/persistent

Each run is a tools/train.py workdir under --workdir_base; an interrupted study
resumes where it stopped (finished runs are kept, a half-finished one resumes
from its last epoch). Only the summary goes to --results_dir.
"""

import os
import statistics
import sys
import typing

import keras
from absl import app, flags, logging

from keras_icn import evaluation, files, training

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "mnist", "TFDS image-classification dataset.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "One run per mode and seed.")
flags.DEFINE_integer("epochs", 5, "Training epochs of every run.")
flags.DEFINE_integer("train_examples", None, "Train on the first N training examples.")
flags.DEFINE_integer("validation_examples", 0, "Hold out the last N training examples.")
flags.DEFINE_enum("split", "test", ["test", "validation"], "Evaluate on test, or on the held-out examples.")
flags.DEFINE_integer("examples", None, "Evaluate on the split's first N examples.")
flags.DEFINE_list("icn_settings", [], "field=value,...: settings of the icn runs (keras_icn.training.Config fields).")
flags.DEFINE_list("epsilons", ["0.05", "0.1", "0.2"], "FGSM step sizes.")
flags.DEFINE_string("workdir_base", "/tmp/keras-icn-study", "Where the runs' workdirs go.")
flags.DEFINE_string("results_dir", "results/study", "Where study.md and study.json go.")

MODES = ("baseline", "icn")


def parse_settings(items):
    """`["field=value", ...]` -> a dict of Config fields, values of the field's type."""
    types = typing.get_type_hints(training.Config)
    settings = {}
    for item in items:
        name, _, value = item.partition("=")
        kind = types.get(name)
        optional = type(None) in typing.get_args(kind)
        if optional:  # Optional[X] -> X
            kind = next(k for k in typing.get_args(kind) if k is not type(None))
        if kind not in (bool, int, float, str) or not value:
            raise app.UsageError(f"--icn_settings takes field=value with a field of "
                                 f"keras_icn.training.Config that is a number, string or "
                                 f"bool. Received: {item!r}")
        try:
            settings[name] = (None if optional and value == "None" else
                              value.lower() == "true" if kind is bool else kind(value))
        except ValueError:
            raise app.UsageError(f"--icn_settings: {name} must be a {kind.__name__}. "
                                 f"Received: {item!r}") from None
    return settings


def run(mode, seed, settings):
    """Trains (or resumes, or reuses) one run; returns its config, model and metrics."""
    name = [FLAGS.dataset, mode, f"seed{seed}"]
    name += [f"n{FLAGS.train_examples}"] if FLAGS.train_examples else []
    name += [f"val{FLAGS.validation_examples}"] if FLAGS.validation_examples else []
    name += [f"{k}={v}" for k, v in sorted(settings.items())]
    workdir = os.path.join(FLAGS.workdir_base, "-".join(name))
    config = training.Config(dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, mode=mode,
                             seed=seed, epochs=FLAGS.epochs, train_examples=FLAGS.train_examples,
                             validation_examples=FLAGS.validation_examples, **settings)
    training.check_resumable(config, workdir)  # a run with other settings is never reused
    metrics_path = os.path.join(workdir, "metrics.json")
    done = os.path.exists(metrics_path) and training.load_json(metrics_path)["epochs"] == FLAGS.epochs
    if done:
        logging.info("Reusing the finished run %s", workdir)
        metrics = training.load_json(metrics_path)
        if "seconds_per_epoch" not in metrics:
            raise ValueError(f"{metrics_path} has no seconds_per_epoch; rerun it with --start_over")
    else:
        logging.info("Training %s, seed %d, into %s", mode, seed, workdir)
        metrics = training.train(config, workdir)
    return config, keras.models.load_model(os.path.join(workdir, "model.keras")), metrics


def summarize(values):
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "values": values}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        run_study()
    except ValueError as error:
        sys.exit(f"error: {error}")


def run_study():
    seeds = [int(s) for s in FLAGS.seeds]
    epsilons = [float(e) for e in FLAGS.epsilons]
    icn_settings = parse_settings(FLAGS.icn_settings)
    if FLAGS.split == "validation" and not FLAGS.validation_examples:
        raise app.UsageError("--split=validation needs --validation_examples=N.")
    rows = {mode: [] for mode in MODES}
    for seed in seeds:
        runs = {mode: run(mode, seed, icn_settings if mode == "icn" else {}) for mode in MODES}
        for mode in MODES:
            config, model, metrics = runs[mode]
            other = runs["icn" if mode == "baseline" else "baseline"][1]
            split = training.evaluation_split(config, FLAGS.split)
            report = evaluation.evaluate(model, FLAGS.dataset, FLAGS.data_dir, split, epsilons,
                                         transfer_from=other, samples_per_class=10, seed=seed,
                                         max_examples=FLAGS.examples)
            rows[mode].append({"seed": seed, "seconds_per_epoch": metrics["seconds_per_epoch"],
                               **report})
            logging.info("%s seed %d: %s error %.4f", mode, seed, FLAGS.split, report["error"])

    summary = {"settings": {"dataset": FLAGS.dataset, "seeds": seeds, "epochs": FLAGS.epochs,
                            "train_examples": FLAGS.train_examples,
                            "validation_examples": FLAGS.validation_examples,
                            "split": FLAGS.split, "examples": FLAGS.examples,
                            "icn_settings": icn_settings, "epsilons": epsilons},
               "runs": rows, "summary": {}}
    measures = [(f"{FLAGS.split} error", lambda r: r["error"]), ("ECE", lambda r: r["ece"])]
    measures += [(f"FGSM error, eps={e}", lambda r, e=e: r["fgsm_error"][str(e)]) for e in epsilons]
    measures += [(f"transferred FGSM error, eps={e}",
                  lambda r, e=e: r["fgsm_transfer_error"][str(e)]) for e in epsilons]
    measures += [(f"FGSM detection AUROC (log-sum-exp), eps={e}",
                  lambda r, e=e: r["fgsm_detection_auroc"][str(e)]) for e in epsilons]
    measures += [("synthesized, classified as requested", lambda r: r["synthesis_accuracy"])]
    measures += [(f"OOD AUROC vs uniform noise, {score}",
                  lambda r, score=score: r["ood_auroc"]["uniform_noise"][score])
                 for score in ("max_softmax", "logsumexp")]
    measures += [("seconds per epoch", lambda r: r["seconds_per_epoch"])]
    lines = [f"{FLAGS.dataset}, {len(seeds)} seeds ({', '.join(map(str, seeds))}), "
             f"{FLAGS.epochs} epochs, evaluated on {FLAGS.split}"
             + (f", icn settings {icn_settings}" if icn_settings else "") + ", mean ± std", "",
             "| measure | baseline | icn |", "|---|---|---|"]
    for name, value in measures:
        cells = []
        for mode in MODES:
            stats = summarize([value(r) for r in rows[mode]])
            summary["summary"].setdefault(name, {})[mode] = stats
            scale, unit, digits = ((1, " s", 1) if name == "seconds per epoch" else
                                   (1, "", 4) if name == "ECE" or "AUROC" in name else
                                   (100, "%", 2))
            cells.append(f"{scale * stats['mean']:.{digits}f} ± {scale * stats['std']:.{digits}f}"
                         f"{unit}")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    os.makedirs(FLAGS.results_dir, exist_ok=True)
    files.write_json(os.path.join(FLAGS.results_dir, "study.json"), summary)
    files.write_bytes(os.path.join(FLAGS.results_dir, "study.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)

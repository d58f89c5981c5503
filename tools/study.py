"""Trains `baseline` and `icn` on the same data, seeds and settings, evaluates both,
and writes a Markdown table and a JSON file of mean ± std over the seeds.

    python tools/study.py --data_dir=../shared/datasets/tfds --seeds=0,1,2 --epochs=5 \
        --results_dir=results/mnist_study

Each run is a tools/train.py workdir under --workdir_base; an interrupted study
resumes where it stopped (finished runs are kept, a half-finished one resumes
from its last epoch). Only the summary goes to --results_dir.
"""

import os
import statistics

import keras
from absl import app, flags, logging

from keras_icn import evaluation, files, training

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "mnist", "TFDS image-classification dataset.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "One run per mode and seed.")
flags.DEFINE_integer("epochs", 5, "Training epochs of every run.")
flags.DEFINE_integer("train_examples", None, "Train on the first N training examples.")
flags.DEFINE_integer("test_examples", None, "Evaluate on the first N test examples.")
flags.DEFINE_list("epsilons", ["0.05", "0.1", "0.2"], "FGSM step sizes.")
flags.DEFINE_string("workdir_base", "/tmp/keras-icn-study", "Where the runs' workdirs go.")
flags.DEFINE_string("results_dir", "results/study", "Where study.md and study.json go.")

MODES = ("baseline", "icn")


def run(mode, seed):
    """Trains (or resumes, or reuses) one run; returns its model and metrics."""
    workdir = os.path.join(FLAGS.workdir_base, f"{FLAGS.dataset}-{mode}-seed{seed}")
    config = training.Config(dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, mode=mode,
                             seed=seed, epochs=FLAGS.epochs, train_examples=FLAGS.train_examples)
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
    return keras.models.load_model(os.path.join(workdir, "model.keras")), metrics


def summarize(values):
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "values": values}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    seeds = [int(s) for s in FLAGS.seeds]
    epsilons = [float(e) for e in FLAGS.epsilons]
    split = "test" if FLAGS.test_examples is None else f"test[:{FLAGS.test_examples}]"
    rows = {mode: [] for mode in MODES}
    for seed in seeds:
        models = {}
        for mode in MODES:
            models[mode] = run(mode, seed)
        for mode in MODES:
            model, metrics = models[mode]
            other = models["icn" if mode == "baseline" else "baseline"][0]
            report = evaluation.evaluate(model, FLAGS.dataset, FLAGS.data_dir, split, epsilons,
                                         transfer_from=other, samples_per_class=10, seed=seed)
            rows[mode].append({"seed": seed, "seconds_per_epoch": metrics["seconds_per_epoch"],
                               **report})
            logging.info("%s seed %d: test error %.4f", mode, seed, report["test_error"])

    summary = {"settings": {"dataset": FLAGS.dataset, "seeds": seeds, "epochs": FLAGS.epochs,
                            "train_examples": FLAGS.train_examples, "split": split,
                            "epsilons": epsilons}, "runs": rows, "summary": {}}
    measures = [("test error", lambda r: r["test_error"]), ("ECE", lambda r: r["ece"])]
    measures += [(f"FGSM error, eps={e}", lambda r, e=e: r["fgsm_error"][str(e)]) for e in epsilons]
    measures += [(f"transferred FGSM error, eps={e}",
                  lambda r, e=e: r["fgsm_transfer_error"][str(e)]) for e in epsilons]
    measures += [("seconds per epoch", lambda r: r["seconds_per_epoch"])]
    lines = [f"{FLAGS.dataset}, {len(seeds)} seeds ({', '.join(map(str, seeds))}), "
             f"{FLAGS.epochs} epochs, mean ± std", "",
             "| measure | baseline | icn |", "|---|---|---|"]
    for name, value in measures:
        cells = []
        for mode in MODES:
            stats = summarize([value(r) for r in rows[mode]])
            summary["summary"].setdefault(name, {})[mode] = stats
            scale, unit, digits = {"seconds per epoch": (1, " s", 1), "ECE": (1, "", 4)}.get(
                name, (100, "%", 2))
            cells.append(f"{scale * stats['mean']:.{digits}f} ± {scale * stats['std']:.{digits}f}"
                         f"{unit}")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    os.makedirs(FLAGS.results_dir, exist_ok=True)
    files.write_json(os.path.join(FLAGS.results_dir, "study.json"), summary)
    files.write_bytes(os.path.join(FLAGS.results_dir, "study.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)

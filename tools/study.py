"""Trains `baseline` and `icn` on the same data, seeds and settings, evaluates both,
and writes a Markdown table and a JSON file: mean ± std over the seeds, and the
paired (seed by seed) difference icn − baseline in error and FGSM error with its
95% confidence interval and a paired t-test's p-value.

Small and long-tailed training sets (the same examples for both modes and
every seed: the first ones of each class):

    python tools/study.py --data_dir=../shared/datasets/tfds --seeds=0,1,2,3,4 \
        --examples_per_class=10 --epochs=60 \
        --settings=batch_size=50,samples_per_class=2,prior=gaussian,synthesis_steps=50 \
        --results_dir=results/mnist_small/pc10
    python tools/study.py ... --examples_per_class=500 --imbalance_ratio=100

    python tools/study.py --data_dir=../shared/datasets/tfds --seeds=0,1,2 --epochs=5 \
        --results_dir=results/mnist_study

Choose settings on held-out training examples, never on the test split:

    python tools/study.py --data_dir=../shared/datasets/tfds --seeds=0,1 --epochs=2 \
        --validation_examples=10000 --split=validation \
        --icn_settings=synthesis=persistent --results_dir=/tmp/sweep/persistent

Each run is a tools/train.py workdir under --workdir_base; an interrupted study
resumes where it stopped (finished runs are kept, a half-finished one resumes
from its last epoch). Into --results_dir go the summary (study.md, study.json),
and, as soon as a seed's two runs are trained and evaluated, runs/seedN.json
(their settings and every measure), runs/seedN-MODE.npz (every test example's
label and whether it was classified right, clean and under each FGSM attack),
and their first and last sample grids
(samples/MODE-seedN-epoch-NNN.png). Commit those as they come: a later
invocation, on another machine too, reuses a seed whose runs/seedN.json has the
same settings instead of training it again.
"""

import io
import os
import shutil
import statistics
import sys

import machine

ONEDNN_REASON = machine.prefer_onednn()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from keras_icn import config as config_lib  # noqa: E402
from keras_icn import anchors, data, datasets, evaluation, files, rundir, sources, training  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "mnist", "TFDS image-classification dataset, or a bundled series or table (see tools/train.py --help).")
flags.DEFINE_string("data_dir", None, "TFDS data_dir.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "One run per mode and seed.")
flags.DEFINE_integer("epochs", 5, "Training epochs of every run; 0: the dataset's recipe (keras_icn.config.RECIPES).")
flags.DEFINE_integer("train_examples", None, "Train on the first N training examples.")
flags.DEFINE_integer("validation_examples", 0, "Hold out the last N training examples.")
flags.DEFINE_integer("examples_per_class", None, "Train on the first N examples of each class (the same subset for both modes and every seed).")
flags.DEFINE_float("imbalance_ratio", 1.0, "With --examples_per_class: long-tailed counts, class k keeps floor(N * R^(-k/(K-1))).")
flags.DEFINE_list("known_classes", None, "Train on these classes only; the others' test examples are scored as unknown (open-set AUROC, FPR at 95% TPR, OSCR). One class of a table: an isolation forest is its anchor.")
flags.DEFINE_enum("split", "test", ["test", "validation"], "Evaluate on test, or on the held-out examples.")
flags.DEFINE_integer("examples", None, "Evaluate on the split's first N examples.")
flags.DEFINE_list("settings", [], "field=value,...: settings of every run (keras_icn.config.Config fields).")
flags.DEFINE_list("icn_settings", [], "field=value,...: settings of the icn runs only.")
flags.DEFINE_list("epsilons", ["0.05", "0.1", "0.2"], "FGSM step sizes, in the model's value range; a fraction like 8/255 works.")
flags.DEFINE_string("workdir_base", "/tmp/keras-icn-study", "Where the runs' workdirs go.")
flags.DEFINE_string("results_dir", "results/study", "Where study.md and study.json go.")
flags.DEFINE_bool("tables_only", False, "Train nothing: rewrite study.md and study.json from the runs stored in --results_dir/study.json (e.g. to add the paired statistics to a study made by an earlier version).")

MODES = ("baseline", "icn")


def settings_flag(items):
    try:
        return config_lib.parse_settings(items)
    except ValueError as error:
        raise app.UsageError(f"--settings, --icn_settings: {error}") from None


def study_run(mode, seed, settings):
    """`(config, workdir)` of one run: the resolved config and where it trains."""
    name = [FLAGS.dataset, mode, f"seed{seed}"]
    name += [f"n{FLAGS.train_examples}"] if FLAGS.train_examples else []
    name += [f"val{FLAGS.validation_examples}"] if FLAGS.validation_examples else []
    name += [f"pc{FLAGS.examples_per_class}"] if FLAGS.examples_per_class else []
    name += [f"lt{FLAGS.imbalance_ratio:g}"] if FLAGS.imbalance_ratio != 1.0 else []
    name += [f"known{''.join(FLAGS.known_classes)}"] if FLAGS.known_classes else []
    name += [f"{k}={v}" for k, v in sorted(settings.items())]
    config = config_lib.resolve(config_lib.Config(
        dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, mode=mode, seed=seed,
        epochs=FLAGS.epochs or None, train_examples=FLAGS.train_examples,
        validation_examples=FLAGS.validation_examples,
        examples_per_class=FLAGS.examples_per_class, imbalance_ratio=FLAGS.imbalance_ratio,
        known_classes=known_classes(), **settings))
    return config, os.path.join(FLAGS.workdir_base, "-".join(name))


def known_classes():
    """--known_classes as a tuple of ints, or None."""
    if not FLAGS.known_classes:
        return None
    try:
        return tuple(int(k) for k in FLAGS.known_classes)
    except ValueError:
        raise app.UsageError(f"--known_classes takes labels (ints). Received: "
                             f"{FLAGS.known_classes}") from None


def run(config, workdir):
    """Trains (or resumes, or reuses) one run; returns its model and metrics."""
    mode, seed = config.mode, config.seed
    run_dir = rundir.RunDir(workdir)
    run_dir.check_resumable(config)  # a run with other settings is never reused
    done = run_dir.exists(rundir.METRICS) and run_dir.read_metrics()["epochs"] == config.epochs
    if done:
        logging.info("Reusing the finished run %s", workdir)
        metrics = run_dir.read_metrics()
        if "seconds_per_epoch" not in metrics:
            raise ValueError(f"{run_dir.file(rundir.METRICS)} has no seconds_per_epoch; rerun it "
                             "with --start_over")
    else:
        logging.info("Training %s, seed %d, into %s", mode, seed, workdir)
        metrics = training.train(config, workdir)
    return keras.models.load_model(run_dir.file(rundir.MODEL)), metrics


def comparable(config):
    """A config as JSON, without the settings that do not change a run's result."""
    return {k: v for k, v in config_lib.to_json(config).items()
            if k not in ("data_dir", "download", "strategy", "sample_every")}


def same_settings(record, wanted):
    """Whether a stored record was made with the wanted settings. Settings at
    their defaults are left out of both, so records written before a setting
    existed still count."""
    defaults = config_lib.to_json(config_lib.Config())

    def essential(settings):
        # A record made before a setting existed had that setting's ADDED_SETTINGS value.
        configs = {mode: {k: v for k, v in {**config_lib.ADDED_SETTINGS, **config}.items()
                          if k not in defaults or v != defaults[k]}
                   for mode, config in (settings["configs"] or {}).items()}
        return {**settings, "configs": configs}

    return essential({k: record.get(k) for k in wanted}) == essential(wanted)


def evaluate_seed(seed, configs, workdirs, evaluation_settings):
    """Trains and evaluates one seed's runs, or reuses its record; returns the record."""
    record_path = os.path.join(FLAGS.results_dir, "runs", f"seed{seed}.json")
    wanted = {"configs": {mode: comparable(configs[mode]) for mode in MODES},
              "evaluation": evaluation_settings}
    if os.path.exists(record_path):
        record = rundir.read_json(record_path)
        if same_settings(record, wanted):
            logging.info("Reusing the evaluated runs of seed %d from %s", seed, record_path)
            return record
        logging.info("%s has other settings: training and evaluating seed %d", record_path, seed)
    runs = {mode: run(configs[mode], workdirs[mode]) for mode in MODES}
    rows = {}
    for mode in MODES:
        (model, metrics), other = runs[mode], runs["icn" if mode == "baseline" else "baseline"][0]
        split = config_lib.evaluation_split(configs[mode], FLAGS.split)
        report = evaluation.evaluate(model, FLAGS.dataset, FLAGS.data_dir, split,
                                     evaluation_settings["epsilons"], transfer_from=other,
                                     samples_per_class=10, seed=seed, max_examples=FLAGS.examples,
                                     per_example=True, known_classes=known_classes(),
                                     label_column=configs[mode].label_column,
                                     series_length=configs[mode].series_length)
        # Every example's results, so each number can be derived again.
        os.makedirs(os.path.join(FLAGS.results_dir, "runs"), exist_ok=True)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **report.pop("per_example"))
        files.write_bytes(os.path.join(FLAGS.results_dir, "runs", f"seed{seed}-{mode}.npz"),
                          buffer.getvalue())
        rows[mode] = {"seed": seed, "seconds_per_epoch": metrics["seconds_per_epoch"], **report}
        logging.info("%s seed %d: %s error %.4f", mode, seed, FLAGS.split, report["error"])
        grids = rundir.RunDir(workdirs[mode]).epoch_sample_grids()
        for grid in grids[:1] + grids[-1:]:
            kept = os.path.join(FLAGS.results_dir, "samples",
                                f"{mode}-seed{seed}-{os.path.basename(grid)}")
            os.makedirs(os.path.dirname(kept), exist_ok=True)
            shutil.copyfile(grid, kept)
    record = {**wanted, "rows": rows}
    os.makedirs(os.path.dirname(record_path), exist_ok=True)
    files.write_json(record_path, record)
    return record


def anchor_results(study_settings):
    """Per anchor (keras_icn.anchors), its result for each seed, trained on the runs'
    training examples and scored on their evaluation split; {} unless the dataset
    is a table. With two or more known classes "gradient_boosting": `(error,
    settings)` of gradient-boosted trees; with one (nothing to classify)
    "isolation_forest": the AUROC of known against unknown rows."""
    if not sources.is_source(study_settings["dataset"]):  # TFDS images
        return {}
    dataset = datasets.open_dataset(study_settings["dataset"],
                                    known_classes=study_settings.get("known_classes"),
                                    label_column=study_settings.get("settings", {}).get("label_column"))
    if dataset.kind != "table":
        return {}
    split, validation = dataset.training_splits(study_settings.get("train_examples"),
                                                study_settings.get("validation_examples", 0))
    x, y = dataset.arrays(split, None)
    if study_settings.get("examples_per_class"):
        positions = data.class_subset(y, data.class_counts(
            dataset.num_classes, study_settings["examples_per_class"],
            study_settings.get("imbalance_ratio", 1.0)))
        x, y = x[positions], y[positions]
    evaluated = validation if study_settings["split"] == "validation" else "test"
    x_test, y_test = dataset.arrays(evaluated, None)
    examples = study_settings.get("examples")
    if dataset.num_classes == 1:  # as evaluation.evaluate scores the networks' open set
        x_unknown = dataset.unknown_arrays(evaluated, None)[0]
        return {"isolation_forest": [
            anchors.isolation_forest_auroc(x, x_test[:examples], x_unknown[:examples], seed)
            for seed in study_settings["seeds"]]}
    return {"gradient_boosting": [
        anchors.gradient_boosting_error(x, y, x_test[:examples], y_test[:examples], seed)
        for seed in study_settings["seeds"]]}


def summarize(values):
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "values": values}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.info(machine.describe(ONEDNN_REASON))
    try:
        run_study()
    except ValueError as error:
        sys.exit(f"error: {error}")


def run_study():
    if FLAGS.tables_only:
        stored = rundir.read_json(os.path.join(FLAGS.results_dir, "study.json"))
        write_tables(stored["settings"], stored["runs"])
        return
    seeds = [int(s) for s in FLAGS.seeds]
    epsilons = [evaluation.parse_epsilon(e) for e in FLAGS.epsilons]
    settings = settings_flag(FLAGS.settings)
    icn_settings = {**settings, **settings_flag(FLAGS.icn_settings)}
    if FLAGS.split == "validation" and not FLAGS.validation_examples:
        raise app.UsageError("--split=validation needs --validation_examples=N.")
    evaluation_settings = {"split": FLAGS.split, "examples": FLAGS.examples, "epsilons": epsilons}
    rows = {mode: [] for mode in MODES}
    for seed in seeds:
        planned = {mode: study_run(mode, seed, icn_settings if mode == "icn" else settings)
                   for mode in MODES}
        record = evaluate_seed(seed, {m: planned[m][0] for m in MODES},
                               {m: planned[m][1] for m in MODES}, evaluation_settings)
        for mode in MODES:
            rows[mode].append(record["rows"][mode])

    epochs = planned["icn"][0].epochs  # resolved: the recipe's where --epochs=0
    write_tables({"dataset": FLAGS.dataset, "seeds": seeds, "epochs": epochs,
                  "known_classes": known_classes(),
                  "train_examples": FLAGS.train_examples,
                  "validation_examples": FLAGS.validation_examples,
                  "examples_per_class": FLAGS.examples_per_class,
                  "imbalance_ratio": FLAGS.imbalance_ratio,
                  "split": FLAGS.split, "examples": FLAGS.examples,
                  "settings": settings, "icn_settings": icn_settings, "epsilons": epsilons},
                 rows)


def write_tables(study_settings, rows):
    """Writes study.md and study.json into --results_dir from every seed's rows."""
    split, epsilons, seeds = (study_settings[k] for k in ("split", "epsilons", "seeds"))
    # Sorted, as study.json stores them; absent in studies of earlier versions.
    settings = dict(sorted(study_settings.get("settings", {}).items()))
    icn_settings = dict(sorted(study_settings.get("icn_settings", settings).items()))
    summary = {"settings": study_settings, "runs": rows, "summary": {}}
    errors = [(f"{split} error", lambda r: r["error"])]
    per_class = []
    if study_settings.get("imbalance_ratio", 1.0) != 1.0:  # long-tailed training sets
        errors += [("balanced error (mean over classes)", lambda r: r["balanced_error"])]
        per_class = [(f"error of class {k}", lambda r, k=k: r["per_class_error"][k])
                     for k in range(len(rows["icn"][0]["per_class_error"]))]
    fgsm = [(f"FGSM error, eps={e:.4g}", lambda r, e=e: r["fgsm_error"][str(e)]) for e in epsilons]
    paired = errors + fgsm  # compared seed by seed below
    measures = errors + per_class + [("ECE", lambda r: r["ece"])] + fgsm
    measures += [(f"transferred FGSM error, eps={e:.4g}",
                  lambda r, e=e: r["fgsm_transfer_error"][str(e)]) for e in epsilons]
    measures += [(f"FGSM detection AUROC (log-sum-exp), eps={e:.4g}",
                  lambda r, e=e: r["fgsm_detection_auroc"][str(e)]) for e in epsilons]
    measures += [("synthesized, classified as requested", lambda r: r["synthesis_accuracy"])]
    measures += [(f"OOD AUROC vs uniform noise, {score}",
                  lambda r, score=score: r["ood_auroc"]["uniform_noise"][score])
                 for score in ("max_softmax", "logsumexp")]
    if "open_set" in rows["icn"][0]:  # classes held out of training: known against unknown
        scores = ("max_softmax", "max_logit", "logsumexp")
        open_set = [(f"open-set AUROC, {score}", lambda r, score=score: r["open_set"][score]["auroc"])
                    for score in scores]
        measures += open_set
        measures += [(f"open-set FPR at 95% TPR, {score}",
                      lambda r, score=score: r["open_set"][score]["fpr_at_95_tpr"])
                     for score in scores]
        measures += [(f"open-set OSCR, {score}",
                      lambda r, score=score: r["open_set"][score]["oscr"]) for score in scores]
        paired = paired + open_set
    measures += [("seconds per epoch", lambda r: r["seconds_per_epoch"])]
    lines = [f"{study_settings['dataset']}, {len(seeds)} seeds ({', '.join(map(str, seeds))}), "
             f"{study_settings['epochs']} epochs, evaluated on {split}"
             + (f", settings {settings}" if settings else "")
             + (f", icn settings {icn_settings}" if icn_settings != settings else "") + ", mean ± std", "",
             "| measure | baseline | icn |", "|---|---|---|"]
    for name, value in measures:
        cells = []
        for mode in MODES:
            stats = summarize([value(r) for r in rows[mode]])
            summary["summary"].setdefault(name, {})[mode] = stats
            scale, unit, digits = ((1, " s", 1) if name == "seconds per epoch" else
                                   (1, "", 4) if name == "ECE" or "AUROC" in name or "OSCR" in name else
                                   (100, "%", 2))
            cells.append(f"{scale * stats['mean']:.{digits}f} ± {scale * stats['std']:.{digits}f}"
                         f"{unit}")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    lines += ["", f"icn − baseline, paired by seed: mean difference, its 95% confidence interval "
              f"(Student t, {len(seeds) - 1} degrees of freedom) and the paired t-test's p-value",
              "", "| measure | icn − baseline | 95% CI | p |", "|---|---|---|---|"]
    summary["paired"] = {}
    for name, value in paired:
        difference = evaluation.paired_difference([value(r) for r in rows["icn"]],
                                                  [value(r) for r in rows["baseline"]])
        summary["paired"][name] = difference
        interval, p = "n/a", "n/a"
        if difference["p_value"] is not None:
            interval = (f"[{100 * difference['ci_low']:+.2f}, "
                        f"{100 * difference['ci_high']:+.2f}] pp")
            p = f"{difference['p_value']:.3g}"
        lines.append(f"| {name} | {100 * difference['mean']:+.2f} pp | {interval} | {p} |")
    if any(d["p_value"] is None for d in summary["paired"].values()):
        lines += ["", "n/a: a t interval needs at least 2 seeds whose differences are not all "
                  "equal."]
    if len(study_settings.get("known_classes") or ()) == 1:
        lines += ["", "One known class: each network has one logit f, error is the share of the "
                  "known class's rows with f(x) <= 0, and max-softmax is sigmoid(f), so every "
                  "score ranks the rows alike. Without pseudo-negatives a one-logit network has "
                  "no loss: the baseline is the untrained network."]
    anchor = anchor_results(study_settings)
    if "gradient_boosting" in anchor:
        stats = summarize([error for error, _ in anchor["gradient_boosting"]])
        summary["anchor"] = {"gradient_boosting": {
            **stats, "settings": [s for _, s in anchor["gradient_boosting"]]}}
        lines += ["", "Anchor: gradient-boosted trees (scikit-learn's HistGradientBoostingClassifier, "
                  "settings chosen by 5-fold cross-validation on the same training examples, "
                  f"one fit per seed), {split} error: {100 * stats['mean']:.2f} ± "
                  f"{100 * stats['std']:.2f}%"]
    if "isolation_forest" in anchor:
        stats = summarize(anchor["isolation_forest"])
        summary["anchor"] = {"isolation_forest": stats}
        lines += ["", "Anchor: an isolation forest (scikit-learn's IsolationForest, default "
                  "settings, random_state = the seed) fitted on the same training rows of the "
                  f"known class in raw units, {split} rows, open-set AUROC known against "
                  f"unknown: {stats['mean']:.4f} ± {stats['std']:.4f}"]
    os.makedirs(FLAGS.results_dir, exist_ok=True)
    files.write_json(os.path.join(FLAGS.results_dir, "study.json"), summary)
    files.write_bytes(os.path.join(FLAGS.results_dir, "study.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)

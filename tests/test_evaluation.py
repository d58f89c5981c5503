import json
import os
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_icn import config as config_lib
from keras_icn import evaluation, open_set, training
from conftest import REPO, make_images, tfds_data_dir


def test_ece_matches_hand_computation():
    probabilities = [[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.55, 0.45]]
    labels = [0, 1, 1, 0]
    # Bins of width 1/15: {0.6 wrong, 0.55 right}, {0.7 right}, {0.9 right}.
    expected = 2 / 4 * abs(0.5 - 0.575) + 1 / 4 * abs(1 - 0.7) + 1 / 4 * abs(1 - 0.9)
    assert abs(evaluation.expected_calibration_error(probabilities, labels) - expected) < 1e-12


def test_auroc_matches_hand_computation_with_ties():
    assert abs(evaluation.auroc([0.9, 0.8, 0.4], [0.5, 0.4, 0.1]) - 7.5 / 9) < 1e-12
    assert evaluation.auroc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert evaluation.auroc([0.0], [1.0]) == 0.0


def test_epsilons_are_numbers_or_fractions():
    assert evaluation.parse_epsilon("0.1") == 0.1
    assert evaluation.parse_epsilon("8/255") == 8 / 255
    with pytest.raises(ValueError, match="Received: '8/0'"):
        evaluation.parse_epsilon("8/0")


def test_ood_scores():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    scores = evaluation.ood_scores(logits)
    softmax = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(scores["max_softmax"], softmax.max(1))
    np.testing.assert_allclose(scores["logsumexp"], np.log(np.exp(logits).sum(1)))


def test_one_logit_max_softmax_is_its_sigmoid_in_evaluation_and_in_open_set():
    logits = np.array([[-2.0], [0.0], [3.0]])
    sigmoid = 1.0 / (1.0 + np.exp(-logits[:, 0]))
    scores = evaluation.ood_scores(logits)
    np.testing.assert_allclose(scores["max_softmax"], sigmoid)
    np.testing.assert_allclose(scores["logsumexp"], logits[:, 0])
    np.testing.assert_allclose(-open_set.unknown_score(logits, "max_softmax").numpy(), sigmoid,
                               rtol=1e-6)
    # (known, not known): the arg-max is the model's decision, f(x) > 0.
    np.testing.assert_allclose(evaluation.class_probabilities(logits),
                               np.stack([sigmoid, 1.0 - sigmoid], axis=1))


def test_fgsm_increases_the_loss_of_a_trained_model(trained_model):
    images, labels = make_images(64, seed=3)

    def loss(x):
        return float(np.mean(keras.losses.sparse_categorical_crossentropy(
            labels, trained_model.network(x), from_logits=True)))

    adversarial = evaluation.fgsm(trained_model.network, images, labels, 0.1, (0.0, 1.0))
    assert loss(adversarial) > 10 * loss(images)  # a confident model: small losses, growing
    assert np.max(np.abs(adversarial.numpy() - images)) <= 0.1 + 1e-6


def test_fgsm_of_every_epsilon_reuses_one_gradient_per_batch(trained_model):
    images, labels = make_images(10, seed=4)
    network = trained_model.network
    by_epsilon = evaluation._fgsm_logits(network, network, images, labels, (0.05, 0.2),
                                         (0.0, 1.0), batch_size=4)  # batches of 4, 4, 2
    for epsilon in (0.05, 0.2):
        one_by_one = network(evaluation.fgsm(network, images, labels, epsilon, (0.0, 1.0)))
        np.testing.assert_allclose(by_epsilon[epsilon], one_by_one, rtol=1e-4, atol=1e-4)
    assert not np.allclose(by_epsilon[0.05], by_epsilon[0.2])


def test_evaluate_tool_on_a_train_workdir(tmp_path):
    training.train(config_lib.Config.tiny(data_dir=tfds_data_dir()), str(tmp_path))
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "evaluate.py"), f"--workdir={tmp_path}",
         "--examples=300", "--samples_per_class=5", f"--transfer_from={tmp_path}",
         "--ood_dataset=mnist", "--epsilons=0.1", f"--reference_dir={tmp_path / 'reference'}",
         "--reference_epochs=1", "--reference_examples=1024"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "eval.json").read_text())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert report["split"] == "test" and report["examples"] == 300 and 0 <= report["ece"] <= 1
    assert report["fgsm_error"]["0.1"] >= report["error"]
    # Transferred from itself, the attack is the white-box one.
    assert report["fgsm_transfer_error"] == report["fgsm_error"]
    assert 0 <= report["fgsm_detection_auroc"]["0.1"] <= 1
    assert abs(report["ood_auroc"]["mnist"]["max_softmax"] - 0.5) < 1e-9  # same data
    assert set(report["ood_auroc"]["uniform_noise"]) == {"max_softmax", "logsumexp", "max_logit"}
    assert 0 <= report["synthesis_accuracy"] <= 1
    quality = report["synthesis_quality"]
    assert (tmp_path / "reference" / "mnist.keras").exists()
    assert sorted(quality["samples"]["per_class"]) == [str(k) for k in range(10)]
    for measures in (quality["samples"]["overall"], quality["real_images"]["overall"]):
        assert set(measures) == {"frechet_distance", "diversity", "precision", "recall",
                                 "nearest_training_ratio"}
    # Real test images are as varied as real test images, give or take sampling.
    assert 0.7 < quality["real_images"]["overall"]["diversity"] < 1.3
    assert "ECE (15 bins)" in result.stdout and "nearest_training_ratio" in result.stdout
    assert metrics["test_error"] >= 0  # the run's own files are untouched


def test_study_trains_both_modes_and_writes_the_tables(tmp_path):
    command = [sys.executable, str(REPO / "tools" / "study.py"), f"--data_dir={tfds_data_dir()}",
               "--seeds=0,1", "--epochs=1", "--train_examples=1000", "--validation_examples=1000",
               "--examples_per_class=30", "--imbalance_ratio=3",  # 30, 26, 23, ..., 10
               "--split=validation", "--examples=200", "--epsilons=1/10",
               "--settings=samples_per_class=1",
               "--icn_settings=num_langevin_steps=3,introspective_weight=0.2,synthesis=fresh",
               f"--workdir_base={tmp_path / 'runs'}",
               f"--results_dir={tmp_path / 'results'}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    study = json.loads((tmp_path / "results" / "study.json").read_text())
    assert [r["seed"] for r in study["runs"]["icn"]] == [0, 1]
    errors = study["summary"]["validation error"]["baseline"]["values"]
    assert errors == [r["error"] for r in study["runs"]["baseline"]]
    # Evaluated on the held-out last 1000 training examples, not on test.
    assert {r["split"] for r in study["runs"]["icn"]} == {"train[59000:]"}
    assert {r["examples"] for r in study["runs"]["icn"]} == {200}
    icn_config = json.loads((tmp_path / "runs" / (
        "mnist-icn-seed1-n1000-val1000-pc30-lt3-introspective_weight=0.2-num_langevin_steps=3-"
        "samples_per_class=1-synthesis=fresh") / "config.json").read_text())
    assert (icn_config["num_langevin_steps"], icn_config["introspective_weight"],
            icn_config["synthesis"], icn_config["samples_per_class"]) == (3, 0.2, "fresh", 1)
    assert icn_config["validation_examples"] == 1000 and icn_config["train_examples"] == 1000
    assert (icn_config["examples_per_class"], icn_config["imbalance_ratio"]) == (30, 3.0)
    table = (tmp_path / "results" / "study.md").read_text()
    assert "| FGSM error, eps=0.1 |" in table and "| seconds per epoch |" in table
    assert "| balanced error (mean over classes) |" in table and "| error of class 9 |" in table
    # The paired comparison, from the tool: per-seed differences, interval, p-value.
    paired = study["paired"]["validation error"]
    icn, baseline = (study["summary"]["validation error"][m]["values"] for m in ("icn", "baseline"))
    assert paired["differences"] == pytest.approx([a - b for a, b in zip(icn, baseline)])
    assert set(study["paired"]) == {"validation error", "balanced error (mean over classes)",
                                    "FGSM error, eps=0.1"}
    assert re.search(r"^\| validation error \| [+-]\d+\.\d\d pp \| (\[.*\] pp|n/a) \| ",
                     table, re.M)
    # An interval the t-test cannot give is marked, and the table says why.
    undefined = any(d["p_value"] is None for d in study["paired"].values())
    assert ("n/a: a t interval needs at least 2 seeds" in table) == undefined
    # Every example's results are kept: the errors can be derived again from them.
    for mode, seed in (("icn", 0), ("baseline", 1)):
        examples = np.load(tmp_path / "results" / "runs" / f"seed{seed}-{mode}.npz")
        row = study["runs"][mode][seed]
        assert len(examples["label"]) == 200
        assert 1.0 - examples["correct"].mean() == pytest.approx(row["error"])
        assert 1.0 - examples["fgsm_correct/0.1"].mean() == pytest.approx(row["fgsm_error"]["0.1"])
        per_class = [1.0 - examples["correct"][examples["label"] == k].mean() for k in range(10)]
        assert per_class == pytest.approx(row["per_class_error"])
    # Each seed's record and its first and last sample grids are kept with the results.
    record = json.loads((tmp_path / "results" / "runs" / "seed1.json").read_text())
    assert record["rows"]["icn"] == study["runs"]["icn"][1]
    assert record["configs"]["icn"]["num_langevin_steps"] == 3
    assert sorted(p.name for p in (tmp_path / "results" / "samples").iterdir()) == [
        f"{mode}-seed{seed}-epoch-001.png" for mode in ("baseline", "icn") for seed in (0, 1)]
    # --tables_only rewrites the tables from the stored runs alone, to the same numbers.
    (tmp_path / "results" / "study.md").unlink()
    tables = subprocess.run([*command, "--tables_only", "--workdir_base=/nonexistent"],
                            capture_output=True, text=True, timeout=300, env=env)
    assert tables.returncode == 0, tables.stderr[-3000:]
    assert (tmp_path / "results" / "study.md").read_text() == table
    # A second invocation reuses the records and writes the same numbers, even with the
    # runs' workdirs gone (a study continued in a later session, or on another machine).
    shutil.rmtree(tmp_path / "runs" / "mnist-baseline-seed1-n1000-val1000-pc30-lt3-samples_per_class=1")
    again = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert again.returncode == 0 and "Reusing the evaluated runs of seed 1" in again.stderr
    assert json.loads((tmp_path / "results" / "study.json").read_text())["summary"] == study["summary"]
    # A record made with other settings (e.g. older defaults) is not reused: its runs are
    # trained (or their finished workdirs reused) and evaluated again.
    record_path = tmp_path / "results" / "runs" / "seed0.json"
    record_path.write_text(record_path.read_text().replace('"learning_rate": 0.001',
                                                           '"learning_rate": 0.5'))
    again = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert again.returncode == 0 and "has other settings: training and evaluating seed 0" in again.stderr
    assert "Reusing the finished run" in again.stderr
    assert json.loads(record_path.read_text())["configs"]["baseline"]["learning_rate"] == 0.001
    # Nor is a finished workdir made with other settings.
    record_path.unlink()
    config_path = (tmp_path / "runs" / "mnist-baseline-seed0-n1000-val1000-pc30-lt3-samples_per_class=1"
                   / "config.json")
    assert json.loads(config_path.read_text())["samples_per_class"] == 1  # --settings: both modes
    config_path.write_text(config_path.read_text().replace('"learning_rate": 0.001',
                                                           '"learning_rate": 0.5'))
    refused = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert refused.returncode != 0 and "learning_rate: 0.5 -> 0.001" in refused.stderr


def test_a_one_class_study_scores_the_held_out_class_beside_an_isolation_forest(tmp_path):
    # Shuttle's normal rows (class 0) are the one known class, its anomalies the unknown one.
    command = [sys.executable, str(REPO / "tools" / "study.py"), "--dataset=shuttle",
               "--known_classes=0", "--seeds=0", "--epochs=2", "--train_examples=120",
               "--examples=300", "--epsilons=0.1",
               "--settings=batch_size=16,samples_per_class=2,synthesis_steps=5",
               f"--workdir_base={tmp_path / 'runs'}", f"--results_dir={tmp_path / 'results'}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    study = json.loads((tmp_path / "results" / "study.json").read_text())
    record = json.loads((tmp_path / "results" / "runs" / "seed0.json").read_text())
    for mode in ("baseline", "icn"):
        assert record["configs"][mode]["synthesis"] == "fresh"  # resolved for one class
        row = study["runs"][mode][0]
        assert row["examples"] == 300 and row["open_set"]["unknown_examples"] == 140
        # One logit: max-softmax is its sigmoid, so it ranks the rows as the logit does.
        aurocs = [row["open_set"][score]["auroc"] for score in ("max_softmax", "max_logit",
                                                                 "logsumexp")]
        assert 0.0 <= aurocs[2] <= 1.0 and aurocs == pytest.approx([aurocs[2]] * 3)
        examples = np.load(tmp_path / "results" / "runs" / f"seed0-{mode}.npz")
        assert 1.0 - examples["correct"].mean() == pytest.approx(row["error"])
    forest = study["anchor"]["isolation_forest"]
    assert forest["values"][0] > 0.8 and "gradient_boosting" not in study["anchor"]
    table = (tmp_path / "results" / "study.md").read_text()
    assert "| open-set AUROC, logsumexp |" in table and "One known class:" in table
    assert f"open-set AUROC known against unknown: {forest['mean']:.4f}" in table
    figure = tf.io.decode_png((tmp_path / "results" / "samples" / "icn-seed0-epoch-002.png")
                              .read_bytes()).numpy()
    assert figure.shape[0] == 96  # one class: one row of profiles


def test_paired_difference_matches_a_hand_computed_t_test():
    icn, baseline = [0.10, 0.12, 0.11, 0.09, 0.13], [0.12, 0.13, 0.12, 0.12, 0.14]
    result = evaluation.paired_difference(icn, baseline)
    # differences -0.02, -0.01, -0.01, -0.03, -0.01: mean -0.016, sd 0.008944, sem 0.004,
    # t = -4.0 with 4 degrees of freedom; t(0.975, 4) = 2.7764.
    assert result["mean"] == pytest.approx(-0.016)
    assert result["p_value"] == pytest.approx(0.01613, abs=5e-5)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx(
        (-0.016 - 2.7764 * 0.004, -0.016 + 2.7764 * 0.004), abs=1e-5)
    single = evaluation.paired_difference([0.1], [0.2])
    assert single["mean"] == pytest.approx(-0.1) and single["p_value"] is None


def test_synthesis_sweep_measures_every_prior_and_chain_length(tmp_path):
    config = config_lib.Config.tiny(data_dir=tfds_data_dir(), validation_examples=1000,
                                    prior="pca")
    training.train(config, str(tmp_path / "run"))
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "synthesis_sweep.py"),
         f"--workdirs={tmp_path / 'run'}", "--priors=gaussian,pca", "--steps=1,3",
         "--metrics=pixel,prior",
         "--samples_per_class=10", f"--reference_dir={tmp_path / 'reference'}",
         "--reference_epochs=1", "--reference_examples=1024", f"--output_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "out" / "sweep.json").read_text())["rows"]
    assert [(r["prior"], r["metric"], r["steps"]) for r in rows] == [
        (prior, metric, steps) for prior in ("gaussian", "pca") for metric in ("pixel", "prior")
        for steps in (1, 3)] + [("real images", None, None)]
    assert all(0.0 <= r["as_requested"] <= 1.0 for r in rows[:-1])
    assert len({r["step_size"] for r in rows[:-1]}) == 1  # the run's
    # Real validation images against real validation images: close to a perfect score.
    assert rows[-1]["precision"] > 0.7 and 0.7 < rows[-1]["diversity"] < 1.3
    # The pca prior's draws vary more than the per-pixel Gaussian's.
    assert rows[4]["diversity"] > rows[0]["diversity"]
    # The same start points, other chains.
    assert rows[5]["frechet_distance"] != rows[7]["frechet_distance"]
    grid = tf.io.decode_png(next((tmp_path / "out").glob("run-pca-prior-*-3.png")).read_bytes())
    assert grid.shape == (10 * 28, 10 * 28, 1)
    assert len(list((tmp_path / "out").glob("*.png"))) == 8
    assert "| run | p_0 | metric | step size | steps |" in (tmp_path / "out" / "sweep.md").read_text()

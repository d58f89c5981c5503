import json
import os
import subprocess
import sys

import keras
import numpy as np

from keras_icn import evaluation, training
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


def test_ood_scores():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    scores = evaluation.ood_scores(logits)
    softmax = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(scores["max_softmax"], softmax.max(1))
    np.testing.assert_allclose(scores["logsumexp"], np.log(np.exp(logits).sum(1)))


def test_fgsm_increases_the_loss_of_a_trained_model(trained_model):
    images, labels = make_images(64, seed=3)

    def loss(x):
        return float(np.mean(keras.losses.sparse_categorical_crossentropy(
            labels, trained_model.network(x), from_logits=True)))

    adversarial = evaluation.fgsm(trained_model.network, images, labels, 0.1, (0.0, 1.0))
    assert loss(adversarial) > 10 * loss(images)  # a confident model: small losses, growing
    assert np.max(np.abs(adversarial.numpy() - images)) <= 0.1 + 1e-6


def test_evaluate_tool_on_a_train_workdir(tmp_path):
    training.train(training.Config.tiny(data_dir=tfds_data_dir()), str(tmp_path))
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "evaluate.py"), f"--workdir={tmp_path}",
         "--test_examples=300", "--samples_per_class=2", f"--transfer_from={tmp_path}",
         "--ood_dataset=mnist", "--epsilons=0.1"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "eval.json").read_text())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert report["test_examples"] == 300 and 0 <= report["ece"] <= 1
    assert report["fgsm_error"]["0.1"] >= report["test_error"]
    # Transferred from itself, the attack is the white-box one.
    assert report["fgsm_transfer_error"] == report["fgsm_error"]
    assert abs(report["ood_auroc"]["mnist"]["max_softmax"] - 0.5) < 1e-9  # same data
    assert set(report["ood_auroc"]["uniform_noise"]) == {"max_softmax", "logsumexp"}
    assert 0 <= report["synthesis_accuracy"] <= 1
    assert "ECE (15 bins)" in result.stdout
    assert metrics["test_error"] >= 0  # the run's own files are untouched

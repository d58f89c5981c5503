"""Saying "unknown": the score, its calibrated threshold, served and re-calibrated."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_icn import open_set, serving, training
from keras_icn.config import Config
from conftest import REPO, make_images, tfds_data_dir


def test_calibration_keeps_the_requested_share_of_known_inputs():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=20_000)
    for rate in (0.95, 0.8, 0.99):
        threshold = open_set.calibrate(scores[:10_000], rate)
        assert np.mean(scores[:10_000] <= threshold) == pytest.approx(rate, abs=1e-4)
        assert np.mean(scores[10_000:] <= threshold) == pytest.approx(rate, abs=0.01)  # new ones
    with pytest.raises(ValueError, match="true_positive_rate must be in"):
        open_set.calibrate(scores, 0.0)
    with pytest.raises(ValueError, match="1 not finite"):
        open_set.calibrate([1.0, np.nan], 0.95)


def test_scores_are_the_negated_known_scores():
    logits = tf.constant([[2.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(open_set.unknown_score(logits, "logsumexp"),
                               -np.log(np.exp([2.0, 0.0]).sum()) * np.array([1, 0])
                               + np.array([0, -np.log(2.0)]), rtol=1e-6)
    np.testing.assert_allclose(open_set.unknown_score(logits, "max_logit"), [-2.0, 0.0])
    np.testing.assert_allclose(open_set.unknown_score(logits, "max_softmax"),
                               [-1 / (1 + np.exp(-2.0)), -0.5], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown_score must be one of"):
        open_set.check_score("energy")


@pytest.fixture
def calibrated(trained_model):
    """The session's tiny model with its threshold calibrated, reset afterwards."""
    trained_model.calibrate_unknown(make_images(count=200, seed=4)[0])
    yield trained_model
    trained_model.unknown_threshold = None


def test_a_non_finite_input_is_unknown_and_leaves_the_others_alone(calibrated):
    trained_model = calibrated
    images, _ = make_images(count=6, seed=3)
    clean = trained_model.predict_open_set(images)
    broken = images.copy()
    broken[2, 0, 0, 0] = np.nan
    broken[4, 1, 1, 0] = np.inf
    result = trained_model.predict_open_set(broken)
    assert result["is_unknown"][[2, 4]].all() and list(result["classes"][[2, 4]]) == [-1, -1]
    assert np.isinf(result["unknown_score"][[2, 4]]).all()
    keep = [0, 1, 3, 5]
    np.testing.assert_array_equal(result["classes"][keep], clean["classes"][keep])
    np.testing.assert_allclose(result["unknown_score"][keep], clean["unknown_score"][keep],
                               rtol=1e-6)
    # Known inputs of the training distribution are kept at about the calibrated rate.
    kept = ~trained_model.predict_open_set(make_images(count=2000, seed=5)[0])["is_unknown"]
    assert 0.9 <= kept.mean() <= 0.99
    assert trained_model.predict_open_set(np.full((3, 8, 8, 1), 50.0, "float32"))[
        "is_unknown"].all()  # far outside the data


CLIENT = """
import json, sys
import numpy as np
import tensorflow as tf
classify = tf.saved_model.load(sys.argv[1]).signatures["classify"]
raw = np.load(sys.argv[2])["raw"]
out = {k: v.numpy().tolist() for k, v in classify(images=tf.constant(raw)).items()}
try:
    classify(images=tf.constant(np.full((1,) + raw.shape[1:], 300.0, np.float32)))
    out["range_error"] = None
except tf.errors.InvalidArgumentError as error:
    out["range_error"] = error.message
print(json.dumps(out, default=str))
"""


def test_the_served_classify_and_the_python_api_agree(tmp_path, calibrated):
    trained_model = calibrated
    serving.export_saved_model(trained_model, str(tmp_path / "1"))
    raw = np.round(make_images(count=8, seed=6)[0] * 255).astype("float32")
    raw[3, 2, 2, 0] = np.nan
    np.savez(tmp_path / "raw.npz", raw=raw)
    result = subprocess.run([sys.executable, "-c", CLIENT, str(tmp_path / "1"),
                             str(tmp_path / "raw.npz")], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    ours = trained_model.predict_open_set(trained_model.from_raw(raw).numpy())
    assert served["classes"] == ours["classes"].tolist() and served["classes"][3] == -1
    assert served["is_unknown"] == ours["is_unknown"].tolist() and served["is_unknown"][3]
    np.testing.assert_allclose(np.array(served["unknown_score"], float)[[0, 1, 2, 4, 5, 6, 7]],
                               ours["unknown_score"][[0, 1, 2, 4, 5, 6, 7]], rtol=1e-5)
    assert "images must be raw pixels in [0, 255]" in served["range_error"]


def test_calibrate_tool_rewrites_the_threshold_and_exports_a_new_version(tmp_path):
    config = Config.tiny(dataset="mnist", data_dir=tfds_data_dir(), validation_examples=300)
    metrics = training.train(config, str(tmp_path))
    kept = metrics["test_known_kept"]
    assert 0.9 <= kept <= 0.99 and metrics["unknown_threshold"] is not None
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "calibrate.py"), f"--workdir={tmp_path}",
         "--split=validation", "--true_positive_rate=0.8"], capture_output=True, text=True,
        timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "keeps 80" in result.stdout and (tmp_path / "export" / "2" / "saved_model.pb").exists()
    import keras

    model = keras.models.load_model(tmp_path / "model.keras")
    assert model.unknown_threshold < metrics["unknown_threshold"]  # fewer kept: lower
    bad = subprocess.run(
        [sys.executable, str(REPO / "tools" / "calibrate.py"), f"--workdir={tmp_path}",
         f"--inputs={tmp_path / 'missing.npz'}"], capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert bad.returncode != 0 and "missing.npz" in bad.stderr
    assert not (tmp_path / "export" / "3").exists()

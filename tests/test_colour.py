"""The 32x32 colour path end to end: CIFAR-10 from the shared TFDS data_dir, augmented
positives, a ResNet with BatchNorm (depth 8, for speed), synthesis, the sample grid with
class names, and the SavedModel read by a TensorFlow-only process."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_icn import config as config_lib
from keras_icn import data, training
from conftest import REPO, tfds_data_dir

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]


def test_cifar10_comes_from_the_shared_data_dir():
    info = data.dataset_info("cifar10", tfds_data_dir())
    assert str(info.version) == "3.0.2"
    assert info.features["image"].shape == (32, 32, 3)
    assert info.features["label"].names == CLASS_NAMES
    assert info.splits["train"].num_examples == 50_000
    images, labels = next(iter(data.load_split("cifar10", "test[:500]", tfds_data_dir())
                               .batch(500)))
    assert images.shape == (500, 32, 32, 3) and images.numpy().max() <= 1.0
    assert set(labels.numpy()) == set(range(10))


# The paper's ResNet (its recipe) and the default colour network, fast_cnn (airbench's
# recipe: patch whitening fitted to the data, label smoothing, flipped test views), each
# at a tiny width.
@pytest.fixture(scope="module", params=["resnet8", "fast_cnn8"])
def run(request, tmp_path_factory):
    workdir = tmp_path_factory.mktemp(f"cifar10-{request.param}")
    config = config_lib.Config.tiny(dataset="cifar10", data_dir=tfds_data_dir(),
                                    network=request.param, train_examples=512,
                                    synthesis_steps=30)
    metrics = training.train(config, str(workdir))
    return workdir, metrics


def test_colour_images_get_the_colour_recipe(run):
    workdir, metrics = run
    config = json.loads((workdir / "config.json").read_text())
    name = config_lib.recipe_name((32, 32, 3), config["network"])
    assert name == ("fast" if config["network"] == "fast_cnn8" else "resnet")
    recipe = {k: v for k, v in config_lib.RECIPES[name].items()  # but what tiny() sets
              if getattr(config_lib.Config.tiny(), k) is None}
    assert {k: config[k] for k in recipe} == recipe and "step_size" in recipe
    assert config["augment"] is True
    assert metrics["pseudo_negatives_made"] == (512 // 64) * 8
    if name == "fast":  # the whitening filters were fitted, not left at their start
        model = keras.models.load_model(workdir / "model.keras")
        assert model.test_time_flips and model.label_smoothing == 0.2
        kernel = model.network.get_layer("whiten").kernel.numpy()
        assert np.abs(kernel).max() > 5  # 1 / sqrt(eigenvalue): far above Glorot's scale


def test_colour_sample_grid_has_a_row_per_class_and_their_names(run):
    workdir, _ = run
    grid = tf.io.decode_png((workdir / "samples.png").read_bytes()).numpy()
    assert grid.shape[0] == 10 * 32 and grid.shape[2] == 3
    names_width = grid.shape[1] - 2 * 32  # samples_per_class=2 (Config.tiny)
    assert names_width > 20
    strip = grid[:, :names_width]
    assert strip.min() < 128 and np.median(strip) == 255  # dark text on white


def test_tensorflow_only_client_classifies_and_synthesizes_colour_images(run, tmp_path):
    workdir, metrics = run
    raw = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    np.savez(tmp_path / "inputs.npz", raw_images=raw)
    records = os.path.join(tfds_data_dir(), "cifar10", "3.0.2",
                           "cifar10-test.tfrecord-00000-of-00001")
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "tf_only_client.py"), str(workdir / "export" / "1"),
         str(tmp_path / "inputs.npz"), records],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert not report["keras_icn_imported"]
    assert abs(report["test_accuracy"] - metrics["test_accuracy"]) <= 1e-4
    synthesized = report["synthesize"]
    assert synthesized["shape"] == [20, 32, 32, 3] and synthesized["dtype"] == "float32"
    assert 0.0 <= synthesized["min"] and synthesized["max"] <= 255.0
    assert synthesized["deterministic"]  # (batch independence: see export/README.md)
    assert "is not compatible with expected shape [?,32,32,3]" in report["errors"]["image_rank"]


def test_synthesis_raises_the_requested_class_probability(run):
    # A ResNet trained for 8 steps classifies nearly everything as one class, so
    # "classified as requested" says little here (the study measures it on trained
    # models). What must hold at any stage: from the same starts and noise (same seed),
    # chains aimed at class k end with a higher q(k|x) than chains aimed elsewhere.
    workdir, _ = run
    model = keras.models.load_model(workdir / "model.keras")
    probabilities = {}
    for target in range(10):
        samples = model.synthesize(np.full(8, target), seed=0)
        # The chains climb the network's own logits (test-time flips are classification's).
        probabilities[target] = tf.nn.softmax(model.network(samples, training=False)).numpy()
    aimed = np.array([probabilities[k][:, k].mean() for k in range(10)])
    elsewhere = np.array([probabilities[(k + 1) % 10][:, k].mean() for k in range(10)])
    # Chains that did not climb would tie about half the time; these tiny networks, 8
    # training steps in, still have a class or two whose logit barely moves.
    assert np.sum(aimed > elsewhere) >= 8 and aimed.mean() > elsewhere.mean(), (
        aimed, elsewhere)

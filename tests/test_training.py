import dataclasses
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_icn
from keras_icn import config as config_lib
from keras_icn import rundir, training
from conftest import REPO, tfds_data_dir

OUTPUTS = {"config.json", "model.keras", "metrics.json", "samples.png", "tensorboard"}


def check_outputs(workdir, config_values):
    assert OUTPUTS <= set(os.listdir(workdir))
    assert not [name for name in os.listdir(workdir) if name.startswith(".tmp")]
    config = json.loads((workdir / "config.json").read_text())
    assert {k: config[k] for k in config_values} == config_values
    metrics = json.loads((workdir / "metrics.json").read_text())
    for key in ("test_error", "test_accuracy", "train_seconds", "pool_size",
                "pseudo_negatives_made", "history"):
        assert key in metrics, key
    assert 0.0 <= metrics["test_error"] <= 1.0
    assert abs(metrics["test_error"] + metrics["test_accuracy"] - 1.0) < 1e-6
    png = tf.io.decode_png((workdir / "samples.png").read_bytes()).numpy()
    assert png.shape[0] == 10 * 28  # one row per class
    events = [f for _, _, fs in os.walk(workdir / "tensorboard") for f in fs]
    assert any(f.startswith("events.out.tfevents") for f in events)
    model = keras.models.load_model(workdir / "model.keras")
    assert isinstance(model, keras_icn.IntrospectiveClassifier)
    return metrics, model


def test_train_runs_a_tiny_config_end_to_end(tmp_path):
    config = config_lib.Config.tiny(data_dir=tfds_data_dir())
    metrics = training.train(config, str(tmp_path))
    written, model = check_outputs(tmp_path, {"train_examples": 256, "mode": "icn"})
    assert written["pseudo_negatives_made"] == (256 // 64) * config.synthesis_batch_size
    assert written["pool_size"] == written["pseudo_negatives_made"]
    assert metrics["test_error"] == written["test_error"]
    assert model.prior.count.numpy() > 256  # adapt() plus the training batches
    # The synthesis monitor measured the grid's samples against real images.
    assert {"pseudo_negative_acceptance", "synthesis_accuracy", "synthesis_diversity",
            "synthesis_saturation"} <= set(written["history"])


def test_baseline_mode_makes_no_pseudo_negatives(tmp_path):
    config = config_lib.Config.tiny(data_dir=tfds_data_dir(), mode="baseline")
    metrics = training.train(config, str(tmp_path))
    assert metrics["pseudo_negatives_made"] == 0
    # No pool: only the synthesis monitor's measures beside loss and accuracy.
    assert set(metrics["history"]) == {"loss", "accuracy", "synthesis_accuracy",
                                       "synthesis_saturation", "synthesis_diversity"}


def test_validation_examples_are_held_out_and_reported(tmp_path):
    config = config_lib.Config.tiny(data_dir=tfds_data_dir(), mode="baseline",
                                  validation_examples=500)
    metrics = training.train(config, str(tmp_path))
    assert 0.0 <= metrics["validation_error"] <= 1.0
    assert len(metrics["history"]["val_accuracy"]) == 1  # evaluated after every epoch
    assert config_lib.evaluation_split(config, "validation") == "train[59500:]"
    assert config_lib.evaluation_split(config, "test") == "test"
    assert config_lib.evaluation_split(config, "train") == "train[:256]"
    with pytest.raises(ValueError, match="holds out no validation examples"):
        config_lib.evaluation_split(config_lib.Config.tiny(data_dir=tfds_data_dir()), "validation")


def test_settings_left_unset_come_from_the_recipe_for_the_images():
    grey = config_lib.Config().resolve((28, 28, 1))
    assert (grey.optimizer, grey.learning_rate, grey.weight_decay, grey.lr_schedule,
            grey.augment) == ("adam", 1e-3, 0.0, "constant", False)
    colour = config_lib.Config(learning_rate=0.05, network="resnet32").resolve((32, 32, 3))
    assert (colour.optimizer, colour.learning_rate, colour.weight_decay, colour.lr_schedule,
            colour.augment, colour.step_size) == ("adam", 0.05, 0.05, "cosine", True, 5.0)
    assert config_lib.Config(augment=False).resolve((32, 32, 3)).augment is False
    optimizer = training.make_optimizer(colour, total_steps=100)
    assert isinstance(optimizer, keras.optimizers.Adam) and optimizer.weight_decay == 0.05
    assert float(optimizer.learning_rate) == pytest.approx(0.05)  # cosine, at step 0
    sgd = training.make_optimizer(dataclasses.replace(colour, optimizer="sgd"), total_steps=100)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov and sgd.momentum == 0.9
    assert training.make_optimizer(grey, total_steps=100).weight_decay is None
    # The default colour network, fast_cnn, takes airbench's recipe.
    fast = config_lib.Config().resolve((32, 32, 3))
    assert (fast.optimizer, fast.momentum, fast.batch_size, fast.label_smoothing,
            fast.crop_padding, fast.lr_warmup) == ("sgd", 0.85, 1024, 0.2, 2, 0.23)
    sgd = training.make_optimizer(fast, total_steps=100)
    assert sgd.momentum == 0.85 and sgd.weight_decay == pytest.approx(0.0089)
    schedule = sgd._learning_rate  # from a fifth of the peak, up to it at step 23, then down
    rates = [float(schedule(step)) for step in (0, 23, 100)]
    assert rates == pytest.approx([1.5 / 5, 1.5, 0.0], abs=1e-6)


def run_tool(*flags):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}  # as a user's
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return subprocess.run([sys.executable, str(REPO / "tools" / "train.py"), *flags],
                          capture_output=True, text=True, env=env, timeout=600)


def test_train_tool_end_to_end_on_1000_mnist_examples(tmp_path):
    result = run_tool("--dataset=mnist", f"--data_dir={tfds_data_dir()}", "--epochs=1",
                      "--train_examples=1000", f"--workdir={tmp_path}", "--num_langevin_steps=5",
                      "--synthesis=persistent")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics, _ = check_outputs(tmp_path, {"train_examples": 1000, "synthesis": "persistent",
                                          "num_langevin_steps": 5, "epochs": 1})
    assert metrics["test_error"] < 0.5  # it learned something in 7 steps
    assert "pseudo_negative_acceptance" in result.stdout  # Keras' progress bar
    # The tool turned TensorFlow's oneDNN operations on and says so, CPU named.
    on = ("oneDNN operations on (keras-icn's tools set TF_ENABLE_ONEDNN_OPTS=1"
          if platform.machine() in ("x86_64", "AMD64") else "oneDNN operations ")
    assert on in result.stderr and "family" in result.stderr, result.stderr[-3000:]


@pytest.mark.parametrize("flags, message", [
    (["--dataset=mnistt"], "Unknown dataset 'mnistt'"),
    (["--dataset=fashion_mnist", "--nodownload"], "--data_dir"),
    (["--dataset=imdb_reviews"], "not image classification"),
    (["--step_size=-1"], "step_size must be > 0"),
    (["--jit_compile=maybe"], "jit_compile must be auto, true or false. Received: 'maybe'"),
    (["--augment=sometimes"], "augment must be true or false. Received: augment='sometimes'"),
    (["--dataset=shuttle", "--known_classes=0", "--synthesis=data"],
     "synthesis=\"data\" needs at least 2 known classes"),
])
def test_train_tool_bad_input_gets_a_clear_error(tmp_path, flags, message):
    result = run_tool(f"--data_dir={tfds_data_dir()}", f"--workdir={tmp_path / 'w'}",
                      "--train_examples=256", *flags)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


RESUME_FLAGS = ["--dataset=mnist", "--train_examples=512", "--batch_size=64",
                "--num_langevin_steps=3", "--synthesis_batch_size=8", "--pool_capacity=40",
                "--pool_batch_size=8", "--synthesis_steps=5", "--samples_per_class=1",
                "--prior_examples=256", "--seed=3"]


def run_resumable(workdir, epochs, *extra):
    result = run_tool(f"--data_dir={tfds_data_dir()}", f"--workdir={workdir}",
                      f"--epochs={epochs}", *RESUME_FLAGS, *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((workdir / "metrics.json").read_text())


def assert_same_run(workdir, reference):
    ours = keras.models.load_model(workdir / "model.keras")
    theirs = keras.models.load_model(reference / "model.keras")
    for a, b in zip(ours.network.get_weights(), theirs.network.get_weights()):
        np.testing.assert_array_equal(a, b)
    ours_pool = keras_icn.read_pool(str(workdir / "pool"))
    theirs_pool = keras_icn.read_pool(str(reference / "pool"))
    for a, b in zip(ours_pool.batch(1000), theirs_pool.batch(1000)):
        np.testing.assert_array_equal(a["index"].numpy(), b["index"].numpy())
        np.testing.assert_array_equal(a["image"].numpy(), b["image"].numpy())


def test_resumed_run_equals_the_uninterrupted_run(tmp_path):
    reference = run_resumable(tmp_path / "straight", 2)
    run_resumable(tmp_path / "resumed", 1)
    resumed = run_resumable(tmp_path / "resumed", 2)
    assert resumed["initial_epoch"] == 1
    assert resumed["pseudo_negatives_made"] == reference["pseudo_negatives_made"] == 2 * 8 * 8
    records = sum(1 for _ in tf.data.TFRecordDataset(
        tf.io.gfile.glob(str(tmp_path / "resumed" / "pool" / "pool-*.tfrecord.gz")),
        compression_type="GZIP"))
    assert records == resumed["pseudo_negatives_made"]  # no duplicate shards
    assert_same_run(tmp_path / "resumed", tmp_path / "straight")
    # Other settings are refused, and --start_over starts over.
    result = run_tool(f"--data_dir={tfds_data_dir()}", f"--workdir={tmp_path / 'resumed'}",
                      "--epochs=2", *RESUME_FLAGS, "--step_size=0.2")
    assert result.returncode != 0 and "step_size: 0.5 -> 0.2" in result.stderr
    fresh = run_resumable(tmp_path / "resumed", 1, "--start_over")
    assert fresh["initial_epoch"] == 0 and fresh["pseudo_negatives_made"] == 64


def test_run_killed_mid_training_leaves_whole_shards_and_resumes_exactly(tmp_path):
    run_resumable(tmp_path / "straight", 2)
    workdir = tmp_path / "killed"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, str(REPO / "tools" / "train.py"), f"--data_dir={tfds_data_dir()}",
         f"--workdir={workdir}", "--epochs=2", *RESUME_FLAGS],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    first_shard = workdir / "pool" / "pool-00000.tfrecord.gz"
    deadline = time.time() + 300
    while not first_shard.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # while it checkpoints epoch 1, or early in epoch 2
    process.wait()
    for path in keras_icn.pool_io.shard_paths(str(workdir / "pool")):
        keras_icn.pool_io.inspect_shard(path)  # whole, or not visible at all
    run_resumable(workdir, 2)
    assert_same_run(workdir, tmp_path / "straight")


def test_pool_shards_add_up_and_seed_a_fresh_classifier(tmp_path):
    first = config_lib.Config.tiny(data_dir=tfds_data_dir())
    made = training.train(first, str(tmp_path / "first"))["pseudo_negatives_made"]
    shards = tf.io.gfile.glob(str(tmp_path / "first" / "pool" / "pool-*.tfrecord.gz"))
    assert sum(1 for _ in tf.data.TFRecordDataset(shards, compression_type="GZIP")) == made

    second = config_lib.Config.tiny(data_dir=tfds_data_dir(), seed=1,
                                  init_pool_from=str(tmp_path / "first" / "pool"))
    metrics = training.train(second, str(tmp_path / "second"))
    assert metrics["pseudo_negatives_imported"] == min(made, second.pool_capacity)
    assert metrics["pseudo_negatives_made"] == made  # same steps, same synthesis batch
    pool = keras_icn.read_pool(str(tmp_path / "second" / "pool"))
    modes = [e["mode"].numpy() for e in pool]
    # Entries are marked with the synthesis that made them: "data", the default.
    assert modes == [b"imported"] * metrics["pseudo_negatives_imported"] + [b"data"] * made


def test_pool_tool_prints_statistics_and_draws_a_grid(tmp_path):
    training.train(config_lib.Config.tiny(data_dir=tfds_data_dir()), str(tmp_path))
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "pool.py"), f"--pool_dir={tmp_path / 'pool'}",
         f"--grid={tmp_path / 'grid.png'}", "--epoch=0", "--count=10", "--columns=4",
         "--dataset=mnist", f"--data_dir={tfds_data_dir()}", f"--grids={tmp_path / 'grids'}"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "32 entries in 1 shards" in result.stdout
    assert re.search(r"^real images of mnist: spread 0\.\d{4}$", result.stdout, re.M)
    # epoch, entries, acceptance, mean score, spread, diversity
    assert re.search(r"^\s+0\s+32(\s+\d\.\d{4}){4}$", result.stdout, re.M)
    assert os.listdir(tmp_path / "grids") == ["epoch-000.png"]
    grid = tf.io.decode_png((tmp_path / "grid.png").read_bytes()).numpy()
    assert grid.shape == (3 * 28, 4 * 28, 1)
    missing = subprocess.run([sys.executable, str(REPO / "tools" / "pool.py"),
                              f"--pool_dir={tmp_path / 'nothing'}"], capture_output=True, text=True)
    assert missing.returncode != 0 and "No readable pool shards" in missing.stderr


def test_a_run_that_failed_before_training_does_not_block_the_workdir(tmp_path):
    with pytest.raises(ValueError, match="Unknown dataset"):
        training.train(config_lib.Config.tiny(dataset="mnistt", data_dir=tfds_data_dir()),
                       str(tmp_path))
    metrics = training.train(config_lib.Config.tiny(data_dir=tfds_data_dir()), str(tmp_path))
    assert metrics["initial_epoch"] == 0


def test_a_per_class_subset_is_what_the_run_trains_on(tmp_path):
    config = config_lib.Config.tiny(data_dir=tfds_data_dir(), examples_per_class=10,
                                    batch_size=32)
    metrics = training.train(config, str(tmp_path))
    assert metrics["pseudo_negatives_made"] == (100 // 32) * config.synthesis_batch_size
    with pytest.raises(ValueError, match="The training set has 30 examples, fewer than "
                                         "batch_size=32"):
        training.train(dataclasses.replace(config, examples_per_class=3), str(tmp_path / "b"))
    with pytest.raises(ValueError, match="imbalance_ratio needs examples_per_class"):
        config_lib.Config(imbalance_ratio=10)

"""The SavedModel for TF Serving, checked as TF Serving would use it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_icn import config as config_lib
from keras_icn import data, serving, training
from conftest import REPO, make_model, tfds_data_dir

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A model trained a little on MNIST by train(), which exports it."""
    workdir = tmp_path_factory.mktemp("run")
    config = config_lib.Config.tiny(data_dir=tfds_data_dir(), train_examples=1024,
                                  synthesis_steps=30)
    training.train(config, str(workdir))
    return workdir


@pytest.fixture(scope="module")
def client_report(run, tmp_path_factory):
    import keras
    model = keras.models.load_model(run / "model.keras")
    raw = np.random.default_rng(0).uniform(0, 255, (6, 28, 28, 1)).astype("float32")
    expected = model.predict(data.scale_images(raw, model.value_range), verbose=0)
    inputs = tmp_path_factory.mktemp("inputs") / "inputs.npz"
    np.savez(inputs, raw_images=raw)
    records = os.path.join(tfds_data_dir(), "mnist", "3.0.1", "mnist-test.tfrecord-00000-of-00001")
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "tf_only_client.py"), str(run / "export" / "1"),
         str(inputs), records, str(REPO / "export" / "requests")],
        capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), expected


def test_a_tensorflow_only_process_loads_both_signatures(client_report):
    report, _ = client_report
    assert not report["keras_icn_imported"]
    assert {"classify", "synthesize", "serving_default"} <= set(report["signatures"])
    assert not [name for name in report["variables"] if "pool" in name]


def test_classify_equals_the_model_after_the_same_preprocessing(client_report):
    report, expected = client_report
    np.testing.assert_allclose(np.array(report["logits"]), expected, atol=1e-5, rtol=1e-5)


def test_classify_reproduces_the_test_accuracy_of_the_run(run, client_report):
    report, _ = client_report
    metrics = json.loads((run / "metrics.json").read_text())
    assert abs(report["test_accuracy"] - metrics["test_accuracy"]) <= 1e-4


def test_synthesize_contract(client_report):
    synthesized = client_report[0]["synthesize"]
    assert synthesized["shape"] == [20, 28, 28, 1] and synthesized["dtype"] == "float32"
    assert synthesized["scores_shape"] == [20]
    assert 0.0 <= synthesized["min"] and synthesized["max"] <= 255.0
    assert synthesized["deterministic"] and synthesized["differs_across_seeds"]
    assert synthesized["batch_independent"]
    matches = np.mean(np.array(synthesized["classified"]) == np.array(synthesized["requested"]))
    assert matches >= 0.9


def test_bad_inputs_raise_with_clear_messages(client_report):
    errors = client_report[0]["errors"]
    assert "labels must be < num_classes=10" in errors["label_out_of_range"]
    assert "labels and seeds must have the same length" in errors["lengths_differ"]
    assert "Shape of tensor images [2,28,28] is not compatible with expected shape [?,28,28,1]" \
        in errors["image_rank"]


def test_every_example_request_runs_in_row_format(client_report):
    requests = client_report[0]["requests"]
    assert requests["classify.json"] == {"classes": [2], "logits": [2, 10], "probabilities": [2, 10],
                                         "unknown_score": [2], "is_unknown": [2]}
    assert requests["synthesize.json"] == {"images": [3, 28, 28, 1], "scores": [3]}


def saved_model_cli(*args):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    return subprocess.run([cli, *args], capture_output=True, text=True, env=ENV, timeout=300)


def test_saved_model_cli_shows_and_runs_both_signatures(run):
    export = str(run / "export" / "1")
    shown = saved_model_cli("show", "--dir", export, "--all")
    assert shown.returncode == 0, shown.stderr[-2000:]
    for signature in ("classify", "synthesize", "serving_default"):
        assert f"signature_def['{signature}']" in shown.stdout
    assert shown.stdout.count("Method name is: tensorflow/serving/predict") == 3
    assert "inputs['labels']" in shown.stdout and "inputs['seeds']" in shown.stdout
    assert "XlaLaunch" not in shown.stdout
    np.save(run / "images.npy", np.zeros((2, 28, 28, 1), np.float32))
    ran = saved_model_cli("run", "--dir", export, "--tag_set", "serve", "--signature_def",
                          "classify", "--inputs", f"images={run / 'images.npy'}")
    assert ran.returncode == 0 and "Result for output key classes" in ran.stdout, ran.stderr[-2000:]
    ran = saved_model_cli("run", "--dir", export, "--tag_set", "serve", "--signature_def",
                          "synthesize", "--input_exprs", "labels=[3, 7];seeds=[1, 2]")
    assert ran.returncode == 0 and "Result for output key images" in ran.stdout, ran.stderr[-2000:]


def test_export_tool_writes_the_next_version_and_refuses_to_overwrite(run):
    tool = [sys.executable, str(REPO / "export" / "export_saved_model.py"), f"--workdir={run}",
            "--num_steps=5"]
    first = subprocess.run(tool, capture_output=True, text=True, env=ENV, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert (run / "export" / "2" / "saved_model.pb").exists()
    again = subprocess.run(tool + ["--version=2"], capture_output=True, text=True, env=ENV)
    assert again.returncode != 0 and "exists; pass overwrite=True (--overwrite)" in again.stderr


def test_export_writes_atomically_and_refuses_bad_steps(tmp_path):
    model = make_model()
    with pytest.raises(ValueError, match="num_steps must be >= 1"):
        serving.export_saved_model(model, str(tmp_path / "1"), num_steps=0)
    serving.export_saved_model(model, str(tmp_path / "1"))
    assert sorted(os.listdir(tmp_path)) == ["1"]


def test_exported_synthesize_follows_the_synthesis_metric(tmp_path):
    import tensorflow as tf
    from conftest import make_images
    model = make_model(synthesis_metric="prior")
    model.adapt(make_images(256)[0])
    serving.export_saved_model(model, str(tmp_path / "1"), num_steps=4)
    served = tf.saved_model.load(str(tmp_path / "1")).signatures["synthesize"]
    labels, seeds = np.array([0, 1, 1], "int32"), np.array([5, 6, 7], "int32")
    images = served(labels=tf.constant(labels), seeds=tf.constant(seeds))["images"].numpy()
    per_sample = tf.stack([tf.cast(seeds, tf.int64), tf.zeros(3, tf.int64)], axis=1)
    expected = model.to_raw(model.synthesize_from_prior(tf.constant(labels), 4, per_sample))
    np.testing.assert_allclose(images, expected.numpy(), atol=1e-3)
    model.synthesis_metric = "pixel"
    plain = model.to_raw(model.synthesize_from_prior(tf.constant(labels), 4, per_sample))
    assert not np.allclose(images, plain.numpy(), atol=1e-2)


def test_check_export_judges_the_served_model(run, tmp_path):
    import tensorflow as tf
    export_dir = run / "export" / "1"
    tool = [sys.executable, str(REPO / "export" / "check_export.py"), f"--export_dir={export_dir}",
            "--samples_per_class=4", f"--reference_dir={tmp_path / 'reference'}",
            "--reference_epochs=1", "--reference_examples=1024", f"--output={tmp_path / 'c.json'}",
            f"--grid={tmp_path / 'grid.png'}"]
    result = subprocess.run(tool, capture_output=True, text=True, env=ENV, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "c.json").read_text())
    # Served by TensorFlow alone, and the run's own test accuracy through classify.
    assert report["served_by"]["keras_icn_modules"] == [] and report["dataset"] == "mnist"
    metrics = json.loads((run / "metrics.json").read_text())
    assert report["examples"] == 10000
    assert abs(report["test_accuracy"] - metrics["test_accuracy"]) <= 1e-4
    # The same share as this process gets from the same requests.
    loaded = tf.saved_model.load(str(export_dir))
    labels = tf.constant(np.repeat(np.arange(10), 4), tf.int32)
    samples = loaded.signatures["synthesize"](labels=labels, seeds=tf.range(40))["images"]
    classes = loaded.signatures["classify"](images=samples)["classes"].numpy()
    assert report["synthesized"] == 40
    assert report["synthesis_accuracy"] == pytest.approx(np.mean(classes == labels.numpy()))
    quality = report["synthesis_quality"]
    assert quality["samples"]["overall"]["frechet_distance"] > (
        quality["real_images"]["overall"]["frechet_distance"])
    assert tf.io.decode_png((tmp_path / "grid.png").read_bytes()).shape[0] == 10 * 28  # a row a class


def test_check_export_refuses_what_is_not_a_served_export(run, tmp_path):
    tool = [sys.executable, str(REPO / "export" / "check_export.py")]
    missing = subprocess.run(tool + [f"--export_dir={run}"], capture_output=True, text=True,
                             env=ENV, timeout=300)
    assert missing.returncode != 0
    assert f"{run} holds no SavedModel (saved_model.pb)" in missing.stderr
    (tmp_path / "1").symlink_to(run / "export" / "1")
    alone = subprocess.run(tool + [f"--export_dir={tmp_path / '1'}"], capture_output=True,
                           text=True, env=ENV, timeout=300)
    assert alone.returncode != 0 and "pass --dataset" in alone.stderr
    unknown = subprocess.run(tool + [f"--export_dir={tmp_path / '1'}", "--dataset=nope"],
                             capture_output=True, text=True, env=ENV, timeout=300)
    assert unknown.returncode != 0 and "error: Unknown dataset 'nope'" in unknown.stderr

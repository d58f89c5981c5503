"""Inputs other than images: series (batch, T, C) and feature vectors (batch, F)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_icn
from keras_icn import config as config_lib
from keras_icn import pool_io, serving, training
from conftest import REPO

SERIES, TABLE = (16, 3), (5,)


def make_series(count=128, seed=0):
    """Raw series in sensor units: class 0 a slow sine, class 1 a fast one, channels
    offset by 100 and scaled by 10 (so standardization matters)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count).astype("int32")
    time = np.linspace(0, 2 * np.pi, SERIES[0])
    frequency = np.where(labels == 0, 1.0, 3.0)[:, None, None]
    waves = np.sin(frequency * time[None, :, None] + rng.uniform(0, 0.5, (count, 1, SERIES[1])))
    return (100 + 10 * (waves + 0.1 * rng.normal(size=(count,) + SERIES))).astype("float32"), labels


def make_table(count=128, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count).astype("int32")
    values = rng.normal(size=(count,) + TABLE) + np.where(labels == 0, -1.5, 1.5)[:, None]
    return values.astype("float32"), labels


def series_network():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input(SERIES), keras.layers.Conv1D(8, 3, activation="relu"),
                             keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2)])


def table_network():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input(TABLE), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(2)])


def standardize(raw):
    mean, std = raw.mean(axis=tuple(range(raw.ndim - 1))), raw.std(axis=tuple(range(raw.ndim - 1)))
    return mean, std, (raw - mean) / std


def fit(network, inputs, labels, epochs=6, **settings):
    model = keras_icn.IntrospectiveClassifier(
        network, 2, num_langevin_steps=5, synthesis_batch_size=8, pool_batch_size=8,
        pool_capacity=64, step_size=2.0, synthesis_steps=50, seed=0, **settings)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    model.adapt(inputs)
    dataset = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(32, drop_remainder=True)
    return model, dataset


def test_a_series_model_trains_synthesizes_and_persists_its_pool(tmp_path):
    raw, labels = make_series()
    mean, std, inputs = standardize(raw)
    low, high = inputs.min(axis=(0, 1)) - 0.5, inputs.max(axis=(0, 1)) + 0.5  # per channel
    model, dataset = fit(series_network(), inputs, labels, value_range=(low, high),
                         standardization=(mean, std))
    monitor = keras_icn.SynthesisMonitor(str(tmp_path / "samples.png"), samples_per_class=2,
                                         real_images=inputs, real_labels=labels)
    model.fit(dataset, epochs=6, verbose=0,
              callbacks=[keras_icn.PoolWriter(str(tmp_path / "pool")), monitor])
    assert model.evaluate(dataset, return_dict=True, verbose=0)["accuracy"] > 0.9
    samples = model.synthesize(np.repeat([0, 1], 10), seed=1).numpy()
    assert samples.shape == (20,) + SERIES
    assert np.all(samples >= low - 1e-6) and np.all(samples <= high + 1e-6)  # per channel
    assert np.mean(np.argmax(model(samples), 1) == np.repeat([0, 1], 10)) >= 0.9
    pool = list(pool_io.read_pool(str(tmp_path / "pool")).batch(1000))[0]
    assert pool["image"].shape[1:] == SERIES and set(pool["shape"].numpy()[0]) == {16, 3}
    assert pool["schema_version"].numpy()[0] == pool_io.SCHEMA_VERSION == 2
    figure = tf.io.decode_png(tf.io.read_file(str(tmp_path / "samples.png"))).numpy()
    assert figure.shape[2] == 3 and figure.shape[1] > 3 * 100  # a panel per channel
    # Raw units in and out: the model's own map, inverted.
    np.testing.assert_allclose(model.to_raw(model.from_raw(raw[:4])).numpy(), raw[:4], rtol=1e-5)
    # Saved and loaded: bounds and standardization come back.
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.value_range[0], low, rtol=1e-6)
    np.testing.assert_allclose(loaded.standardization[1], std, rtol=1e-6)
    np.testing.assert_allclose(loaded(inputs[:4]), model(inputs[:4]), rtol=1e-5, atol=1e-6)


CLIENT = """
import json, sys
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
raw = np.load(sys.argv[2])["raw"]
classify, synthesize = loaded.signatures["classify"], loaded.signatures["synthesize"]
out = synthesize(labels=tf.constant([0, 1, 0, 1], tf.int32), seeds=tf.constant([1, 2, 3, 4]))
print(json.dumps({
    "inputs": sorted(classify.structured_input_signature[1]),
    "outputs": sorted(out),
    "logits": classify(inputs=tf.constant(raw))["logits"].numpy().tolist(),
    "synthesized": out["inputs"].numpy().tolist(),
    "classified": classify(inputs=out["inputs"])["classes"].numpy().tolist()}))
"""


@pytest.mark.parametrize("kind", ["series", "table"])
def test_exported_signatures_take_and_return_raw_units_in_a_tensorflow_only_process(
        tmp_path, kind):
    raw, labels = make_series() if kind == "series" else make_table()
    mean, std, inputs = standardize(raw)
    network = series_network() if kind == "series" else table_network()
    axes = tuple(range(inputs.ndim - 1))  # bounds per feature, or per channel
    low, high = inputs.min(axis=axes) - 0.5, inputs.max(axis=axes) + 0.5
    model, dataset = fit(network, inputs, labels, value_range=(low, high), prior="gaussian",
                         standardization=(mean, std))
    model.fit(dataset, epochs=6, verbose=0)
    serving.export_saved_model(model, str(tmp_path / "export" / "1"))
    np.savez(tmp_path / "raw.npz", raw=raw[:8])
    result = subprocess.run(
        [sys.executable, "-c", CLIENT, str(tmp_path / "export" / "1"), str(tmp_path / "raw.npz")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["inputs"] == ["inputs"] and report["outputs"] == ["inputs", "scores"]
    np.testing.assert_allclose(report["logits"], model(inputs[:8]).numpy(), rtol=1e-4, atol=1e-4)
    synthesized = np.array(report["synthesized"])  # raw units: within the bounds, mapped back
    assert synthesized.shape == (4,) + raw.shape[1:]
    assert np.all(synthesized >= low * std + mean - 1e-3)
    assert np.all(synthesized <= high * std + mean + 1e-3)
    assert np.any(synthesized > 50) == (kind == "series")  # the series' raw units are ~100
    assert report["classified"] == [0, 1, 0, 1]


@pytest.mark.parametrize("settings, message", [
    (dict(value_range=(np.zeros(4), np.ones(4))), "must broadcast to the input shape"),
    (dict(value_range=(np.ones(5), np.zeros(5))), "low < high everywhere"),
    (dict(standardization=(np.zeros(5), np.zeros(5))), "std must be finite and > 0"),
    (dict(standardization=(np.zeros(4), np.ones(4))), "standardization must be \\(mean, std\\)"),
    (dict(prior="uniform", value_range=None), 'prior="uniform" needs a bounded value_range'),
])
def test_bad_bounds_or_standardization_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        keras_icn.IntrospectiveClassifier(table_network(), 2, **settings)


def test_a_rank_one_network_input_is_refused_with_the_shapes_it_takes():
    network = keras.Sequential([keras.Input(()), keras.layers.Reshape((1,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"\(batch, T, C\) or \(batch, F\)"):
        keras_icn.IntrospectiveClassifier(network, 2)


def test_version_1_pool_shards_are_still_read(tmp_path):
    old = tf.train.Example.FromString(
        pool_io.make_example(7, np.ones((2, 2, 1)), 1, 3, 0, 0.5, "fresh"))
    old.features.feature["schema_version"].int64_list.value[0] = 1
    with tf.io.TFRecordWriter(str(tmp_path / "pool-00000.tfrecord.gz"), "GZIP") as writer:
        writer.write(old.SerializeToString())
    record = next(iter(pool_io.read_pool(str(tmp_path))))
    assert int(record["index"]) == 7 and record["image"].shape == (2, 2, 1)


RUN_FILES = {"config.json", "model.keras", "metrics.json", "samples.png", "samples", "pool",
             "tensorboard", "export"}


def train_tool(*flags):
    return subprocess.run([sys.executable, str(REPO / "tools" / "train.py"), *flags],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def write_csv(path, rows, header):
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")


def test_train_tool_trains_on_a_csv_file_and_an_npz_file(tmp_path):
    values, labels = make_table(count=160)
    names = np.array(["pump", "valve"])[labels]
    write_csv(tmp_path / "plant.csv", [list(v) + [n] for v, n in zip(values, names)],
              [f"sensor{i}" for i in range(TABLE[0])] + ["machine"])
    result = train_tool(f"--dataset=csv:{tmp_path / 'plant.csv'}", "--label_column=machine",
                        "--epochs=3", f"--workdir={tmp_path / 'csv'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert RUN_FILES == {p.name for p in (tmp_path / "csv").iterdir()}
    config = json.loads((tmp_path / "csv" / "config.json").read_text())
    assert (config["network"], config["batch_size"]) == ("auto", 32)  # the table recipe
    metrics = json.loads((tmp_path / "csv" / "metrics.json").read_text())
    assert metrics["test_error"] < 0.2 and metrics["pseudo_negatives_made"] > 0
    # The evaluation tool reads the CSV with the run's label column.
    evaluated = subprocess.run([sys.executable, str(REPO / "tools" / "evaluate.py"),
                                f"--workdir={tmp_path / 'csv'}", "--noquality", "--epsilons=0.1",
                                "--samples_per_class=2"],
                               capture_output=True, text=True, timeout=300,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads((tmp_path / "csv" / "eval.json").read_text())
    assert report["error"] == pytest.approx(metrics["test_error"], abs=1e-6)

    raw, labels = make_series(count=96)
    np.savez(tmp_path / "series.npz", x=raw, y=labels)
    result = train_tool(f"--dataset=npz:{tmp_path / 'series.npz'}", "--epochs=2",
                        f"--workdir={tmp_path / 'npz'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert RUN_FILES == {p.name for p in (tmp_path / "npz").iterdir()}
    # The audit tool reads a series pool and draws its line plots.
    audit = subprocess.run([sys.executable, str(REPO / "tools" / "pool.py"),
                            f"--pool_dir={tmp_path / 'npz' / 'pool'}",
                            f"--grids={tmp_path / 'grids'}"],
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert audit.returncode == 0, audit.stderr[-3000:]
    assert "entries in" in audit.stdout and list((tmp_path / "grids").glob("epoch-*.png"))


@pytest.mark.parametrize("column, message", [
    ("machine", "is not numeric"),
    ("nope", "machine"),  # the error lists the columns that exist
])
def test_train_tool_names_a_bad_csv_column(tmp_path, column, message):
    write_csv(tmp_path / "bad.csv", [[1.0, "a", "pump"], [2.0, "b", "valve"]] * 20,
              ["sensor", "site", "machine"])
    result = train_tool(f"--dataset=csv:{tmp_path / 'bad.csv'}", f"--label_column={column}",
                        "--epochs=1", f"--workdir={tmp_path / 'run'}")
    assert result.returncode != 0
    assert message in result.stderr[-2000:] and ("site" in result.stderr[-2000:]
                                                 or column == "nope")


SERVE = """
import json, sys
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
test = np.load(sys.argv[2])
classify, synthesize = loaded.signatures["classify"], loaded.signatures["synthesize"]
classes = classify(inputs=tf.constant(test["x"]))["classes"].numpy()
labels = np.repeat(np.arange(int(sys.argv[3])), 10).astype("int32")
made = synthesize(labels=tf.constant(labels), seeds=tf.range(len(labels), dtype=tf.int32))
again = classify(inputs=made["inputs"])["classes"].numpy()
print(json.dumps({"correct": int(np.sum(classes == test["y"])), "count": len(classes),
                  "classified_as_asked": float(np.mean(again == labels))}))
"""


def test_a_basic_motions_run_is_reproduced_by_its_export_in_a_tensorflow_only_process(tmp_path):
    from keras_icn import sources

    result = train_tool("--dataset=basic_motions", "--epochs=30", f"--workdir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    source = sources.load("basic_motions")  # raw units, as a client has them
    np.savez(tmp_path / "test.npz", x=source.x_test, y=source.y_test)
    served = subprocess.run(
        [sys.executable, "-c", SERVE, str(tmp_path / "export" / "1"), str(tmp_path / "test.npz"),
         "4"], capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, cwd=tmp_path)
    assert served.returncode == 0, served.stderr[-3000:]
    report = json.loads(served.stdout.strip().splitlines()[-1])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert report["count"] == 40 and report["correct"] == round(metrics["test_accuracy"] * 40)
    assert report["classified_as_asked"] >= 0.9, report


def test_synthesis_sweep_measures_a_series_run(tmp_path):
    raw, labels = make_series(count=160)
    np.savez(tmp_path / "series.npz", x=raw, y=labels)
    config = config_lib.Config.tiny(dataset=f"npz:{tmp_path / 'series.npz'}", train_examples=None,
                                    batch_size=16, validation_examples=30, epochs=2)
    training.train(config, str(tmp_path / "run"))
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "synthesis_sweep.py"), f"--workdirs={tmp_path / 'run'}",
         "--priors=gaussian", "--steps=2", "--samples_per_class=6",
         f"--reference_dir={tmp_path / 'reference'}", "--reference_epochs=1",
         f"--output_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "out" / "sweep.json").read_text())["rows"]
    assert [(r["prior"], r["steps"]) for r in rows] == [("gaussian", 2), ("real images", None)]
    assert 0.0 <= rows[0]["as_requested"] <= 1.0 and rows[0]["frechet_distance"] >= 0
    figure = tf.io.decode_png(next((tmp_path / "out").glob("run-gaussian-pixel-*-2.png"))
                              .read_bytes()).numpy()
    assert figure.shape[2] == 3  # line plots of the series, not an image grid

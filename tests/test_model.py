import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_icn
from conftest import make_dataset, make_images, make_model, make_network

ICN_LOGS = {"loss", "accuracy", "introspective_loss", "pseudo_negative_acceptance", "pool_size"}


def test_fit_logs_the_metrics_and_grows_the_pool():
    model = make_model()
    history = model.fit(make_dataset(count=128), epochs=2, shuffle=False, verbose=0)
    assert set(history.history) == ICN_LOGS
    steps = 2 * 128 // 32
    assert history.history["pool_size"] == [32.0, 64.0]
    assert int(model.pool.count.numpy()) == steps * model.synthesis_batch_size
    assert all(np.isfinite(v) for values in history.history.values() for v in values)
    acceptance = history.history["pseudo_negative_acceptance"]
    assert all(0.0 <= a <= 1.0 for a in acceptance)
    assert set(model.evaluate(make_dataset(), return_dict=True, verbose=0)) == {"loss", "accuracy"}


def test_replay_draws_earlier_entries_and_fresh_ones_stand_in_for_an_empty_pool():
    model = make_model(pool_batch_size=6)  # synthesis_batch_size 8 (conftest)
    fresh, _ = make_images(8, seed=1)
    fresh_labels = tf.range(8) % 2
    images, labels = model._replayed(tf.constant([1, 2]), fresh, fresh_labels, 6)
    np.testing.assert_array_equal(images, fresh[:6])
    np.testing.assert_array_equal(labels, [0, 1, 0, 1, 0, 1])
    earlier, _ = make_images(8, seed=2)
    model.pool.add(earlier, tf.ones(8, "int32"), tf.zeros(8), tf.zeros(8))
    images, labels = model._replayed(tf.constant([1, 2]), fresh, fresh_labels, 6)
    held = {arr.tobytes() for arr in earlier}
    assert all(arr.tobytes() in held for arr in images.numpy())
    np.testing.assert_array_equal(labels, np.ones(6))


def test_data_chains_start_at_the_batch_and_target_another_class():
    model = make_model(num_classes=3, synthesis="data", step_size=1e-6, noise_stddev=0.0)
    images, labels = make_images(6)  # fewer than synthesis_batch_size=8: rows repeat
    labels = np.arange(6) % 3
    samples, targets = model._pseudo_negatives(tf.constant([1, 2]), images, labels, 8)
    rows = np.arange(8) % 6
    np.testing.assert_allclose(samples, images[rows], atol=1e-4)
    assert np.all(targets.numpy() != labels[rows]) and set(targets.numpy()) <= {0, 1, 2}
    with pytest.raises(ValueError, match='synthesis="data" needs num_classes >= 2'):
        keras_icn.IntrospectiveClassifier(make_network(1), 1, synthesis="data")


def test_mixed_chains_start_half_at_the_batch_and_half_at_p0():
    model = make_model(num_classes=3, synthesis="mixed", step_size=1e-6, noise_stddev=0.0)
    images, labels = make_images(6)
    labels = np.arange(6) % 3
    model.prior.update(images)
    seed = tf.constant([1, 2])
    samples, targets = model._pseudo_negatives(seed, images, labels, 7)
    # The first ceil(7 / 2) = 4 start at the batch's first images, toward another class.
    np.testing.assert_allclose(samples[:4], images[:4], atol=1e-4)
    assert np.all(targets.numpy()[:4] != labels[:4])
    # The other 3 start at p_0: none is a batch image, and any class is a target.
    assert all(np.abs(samples[4:].numpy() - image).max() > 1e-2
               for image in images)
    assert set(targets.numpy()) <= {0, 1, 2} and targets.shape == (7,)
    # The data half is the "data" synthesis's own at the same seed.
    data = make_model(num_classes=3, synthesis="data", step_size=1e-6, noise_stddev=0.0)
    _, data_targets = data._pseudo_negatives(seed, images, labels, 4)
    np.testing.assert_array_equal(targets[:4], data_targets)
    with pytest.raises(ValueError, match='synthesis="mixed" needs num_classes >= 2'):
        keras_icn.IntrospectiveClassifier(make_network(1), 1, synthesis="mixed")


@pytest.mark.parametrize("synthesis", ["fresh", "persistent", "data", "mixed"])
def test_both_synthesis_modes_train_and_keep_samples_in_range(synthesis):
    model = make_model(synthesis=synthesis, value_range=(-1.0, 1.0), reinit_probability=0.5)
    images, labels = make_images(64)
    model.fit(images * 2 - 1, labels, batch_size=16, epochs=1, verbose=0)
    held = model.pool.images.numpy()[: int(model.pool.size)]
    assert held.size and held.min() >= -1.0 and held.max() <= 1.0


def test_baseline_is_plain_cross_entropy_training():
    dataset = make_dataset(count=128)
    baseline = keras_icn.IntrospectiveClassifier(make_network(seed=3), 2, mode="baseline")
    baseline.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    plain = make_network(seed=3)
    plain.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    for a, b in zip(baseline.network.weights, plain.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    ours = baseline.fit(dataset, epochs=2, shuffle=False, verbose=0).history
    theirs = plain.fit(dataset, epochs=2, shuffle=False, verbose=0).history
    np.testing.assert_allclose(ours["loss"], theirs["loss"], rtol=1e-5)
    for a, b in zip(baseline.network.weights, plain.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert set(ours) == {"loss", "accuracy"}
    assert int(baseline.pool.count.numpy()) == 0


def test_label_smoothing_trains_on_smoothed_targets_and_flips_classify_by_both_views():
    dataset = make_dataset(count=128)
    smooth = keras_icn.IntrospectiveClassifier(make_network(seed=3), 2, mode="baseline",
                                               label_smoothing=0.2, test_time_flips=True)
    smooth.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    plain = make_network(seed=3)
    plain.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False,
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2))
    ours = smooth.fit(dataset, epochs=1, shuffle=False, verbose=0).history
    theirs = plain.fit(dataset.map(lambda x, y: (x, tf.one_hot(y, 2))), epochs=1, shuffle=False,
                       verbose=0).history
    np.testing.assert_allclose(ours["loss"], theirs["loss"], rtol=1e-5)
    images = make_images(8)[0]
    # Mirror images get the same logits: each is the mean over both views.
    np.testing.assert_allclose(smooth(images), smooth(images[:, :, ::-1]), atol=1e-5)
    network = smooth.network
    np.testing.assert_allclose(smooth(images), (network(images) + network(images[:, :, ::-1])) / 2,
                               atol=1e-5)
    assert smooth.get_config()["test_time_flips"] and smooth.get_config()["label_smoothing"] == 0.2
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\). Received: "
                                         "label_smoothing=1.0"):
        keras_icn.IntrospectiveClassifier(make_network(), 2, label_smoothing=1.0)
    series = keras.Sequential([keras.Input((10, 2)), keras.layers.Flatten(),
                               keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"test_time_flips mirrors images.*\(10, 2\)"):
        keras_icn.IntrospectiveClassifier(series, 2, test_time_flips=True, value_range=None)


def test_warmup_steps_train_plain_cross_entropy_before_synthesis_begins():
    dataset = make_dataset(count=128)  # 4 steps per epoch
    model = make_model(introspection_warmup_steps=6)
    history = model.fit(dataset, epochs=3, shuffle=False, verbose=0).history
    # Steps 0-5 warm up; steps 6-11 synthesize and fill the pool.
    assert history["pool_size"] == [0.0, 16.0, 48.0]
    steps = model.pool.steps.numpy()[: int(model.pool.size)]
    assert steps.min() == 6 and steps.max() == 11
    assert history["introspective_loss"][0] == 0.0 and history["introspective_loss"][2] > 0
    # During the warm-up the update is the baseline's, step for step.
    warm = make_model(introspection_warmup_steps=4)
    baseline = make_model(mode="baseline")
    warm.fit(dataset, epochs=1, shuffle=False, verbose=0)
    baseline.fit(dataset, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(warm.network.get_weights(), baseline.network.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert keras_icn.IntrospectiveClassifier.from_config(
        warm.get_config()).introspection_warmup_steps == 4


def test_fit_runs_compiled_with_xla():
    model = make_model()
    model.compile(optimizer="adam", jit_compile=True)
    assert model.jit_compile is True  # Keras silently falls back when it cannot
    history = model.fit(make_dataset(count=64), epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert history.history["pool_size"] == [16.0]


def test_a_fixed_seed_reproduces_a_run():
    def run():
        model = make_model(seed=7)
        history = model.fit(make_dataset(count=96), epochs=2, shuffle=False, verbose=0).history
        return history, model.pool.images.numpy(), model.network.get_weights()

    first, second = run(), run()
    assert first[0] == second[0]
    np.testing.assert_array_equal(first[1], second[1])
    for a, b in zip(first[2], second[2]):
        np.testing.assert_array_equal(a, b)


def test_save_and_load_round_trip(tmp_path, trained_model):
    path = str(tmp_path / "model.keras")
    trained_model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, keras_icn.IntrospectiveClassifier)
    assert json.dumps(loaded.get_config()) == json.dumps(trained_model.get_config())
    assert loaded.optimizer.iterations.numpy() == trained_model.optimizer.iterations.numpy()
    images, _ = make_images(16)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0),
                                  trained_model.predict(images, verbose=0))
    np.testing.assert_array_equal(loaded.prior.mean.numpy(), trained_model.prior.mean.numpy())
    np.testing.assert_array_equal(loaded.synthesize([0, 1], seed=3).numpy(),
                                  trained_model.synthesize([0, 1], seed=3).numpy())


def test_the_pool_is_not_saved_with_the_model(tmp_path):
    small, large = make_model(pool_capacity=16), make_model(pool_capacity=20_000)
    small.save(tmp_path / "small.keras")
    large.save(tmp_path / "large.keras")
    # 20,000 8x8 float entries would add 5 MB.
    assert (tmp_path / "large.keras").stat().st_size < (tmp_path / "small.keras").stat().st_size + 10_000


def test_synthesize_returns_images_classified_as_the_requested_labels(trained_model):
    labels = np.array([0, 1] * 10)
    samples = trained_model.synthesize(labels, seed=0)
    assert samples.shape == (20, 8, 8, 1) and samples.dtype == tf.float32
    predicted = np.argmax(trained_model.predict(samples, verbose=0), axis=-1)
    assert np.mean(predicted == labels) >= 0.9
    np.testing.assert_array_equal(samples.numpy(), trained_model.synthesize(labels, seed=0).numpy())
    assert not np.array_equal(samples.numpy(), trained_model.synthesize(labels, seed=1).numpy())


def test_binary_case_learns_positives_against_pseudo_negatives():
    model = make_model(num_classes=1, introspective_weight=1.0, step_size=0.1)
    images, _ = make_images(128)
    history = model.fit(images, np.zeros(128, "int32"), batch_size=32, epochs=8, verbose=0)
    assert set(history.history) == ICN_LOGS
    assert history.history["accuracy"][-1] > 0.9  # positives get f(x) > 0
    start_points = model.prior.sample(128, tf.constant([1, 2]))
    assert float(np.mean(model(images))) > float(np.mean(model(start_points))) + 1.0
    assert model.synthesize([0, 0]).shape == (2, 8, 8, 1)


def test_a_one_logit_baseline_has_nothing_to_learn_and_stays_the_untrained_network():
    model = make_model(num_classes=1, mode="baseline")
    before = model.network.get_weights()
    images, _ = make_images(64)
    history = model.fit(images, np.zeros(64, "int32"), batch_size=32, epochs=1, verbose=0)
    assert history.history["loss"] == [0.0] and int(model.optimizer.iterations) == 2
    for a, b in zip(before, model.network.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_network_with_wrong_output_width_is_refused():
    with pytest.raises(ValueError, match=r"num_classes=3 logits.*\(None, 2\)"):
        keras_icn.IntrospectiveClassifier(make_network(2), 3)


def test_network_without_input_shape_is_refused():
    network = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="keras.Input"):
        keras_icn.IntrospectiveClassifier(network, 2)


@pytest.mark.parametrize("argument, value", [
    ("mode", "gan"), ("synthesis", "replay"), ("step_size", 0.0), ("value_range", (1.0, 0.0)),
    ("reinit_probability", 1.5), ("stop_probability", 0.0), ("pool_capacity", 4),
    ("introspection_warmup_steps", -1),
])
def test_bad_arguments_name_the_value(argument, value):
    with pytest.raises(ValueError, match=argument):
        make_model(**{argument: value})


def test_labels_outside_the_classes_stop_fit_with_a_clear_error():
    images, _ = make_images(32)
    model = make_model()
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_classes=2"):
        model.fit(images, np.full(32, 2, "int32"), batch_size=16, verbose=0)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        model.synthesize([0, 5])


def test_compile_refuses_a_loss():
    with pytest.raises(ValueError, match="without loss"):
        make_model().compile(loss="mse")


def test_synthesis_metric_changes_synthesize_and_not_training():
    models = {}
    for metric in keras_icn.model.METRICS:
        keras.utils.set_random_seed(0)
        models[metric] = make_model(synthesis="fresh", synthesis_metric=metric)
        models[metric].adapt(make_images(256)[0])
        models[metric].fit(make_dataset(), epochs=1, shuffle=False, verbose=0)
    # Training chains are plain Langevin chains whatever synthesize() uses.
    for a, b in zip(models["pixel"].get_weights(), models["prior"].get_weights()):
        np.testing.assert_array_equal(a, b)
    labels = [0, 1] * 4
    pixel, prior = (models[m].synthesize(labels, seed=0).numpy() for m in ("pixel", "prior"))
    assert not np.allclose(pixel, prior, atol=1e-4)
    # Settable after synthesize() has traced its function.
    models["pixel"].synthesis_metric = "prior"
    np.testing.assert_allclose(models["pixel"].synthesize(labels, seed=0).numpy(), prior,
                               atol=1e-6)
    restored = keras_icn.IntrospectiveClassifier.from_config(models["prior"].get_config())
    assert restored.synthesis_metric == "prior"
    with pytest.raises(ValueError, match="synthesis_metric='pca'"):
        make_model(synthesis_metric="pca")
    with pytest.raises(ValueError, match="synthesis_metric='pca'"):
        models["prior"].synthesis_metric = "pca"

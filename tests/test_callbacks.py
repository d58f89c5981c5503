import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_icn

from keras_icn import callbacks, files, images
from conftest import make_dataset, make_images, make_model


def test_image_grid_puts_one_class_per_row():
    batch = np.zeros((6, 2, 3, 1), "float32")
    batch[3:] = 1.0  # second row white
    grid = images.image_grid(batch, rows=2)
    assert grid.shape == (4, 9, 1) and grid.dtype == np.uint8
    assert grid[:2].max() == 0 and grid[2:].min() == 255
    with pytest.raises(ValueError, match="5 images into 2"):
        images.image_grid(batch[:5], rows=2)


def test_label_rows_writes_each_name_left_of_its_row():
    grid = np.zeros((3 * 16, 32, 3), np.uint8)
    labelled = images.label_rows(grid, ["a", "bb", "a much longer name"])
    assert labelled.shape[0] == 48 and labelled.shape[2] == 3 and labelled.shape[1] > 32 + 40
    np.testing.assert_array_equal(labelled[:, -32:], grid)
    strip = labelled[:, :-32]
    for row in range(3):  # some dark text in every row's strip
        assert strip[row * 16:(row + 1) * 16].min() < 100
    short = images.label_rows(grid[:, :, :1], ["0", "1", "2"])
    assert short.shape[2] == 1 and short.shape[1] < labelled.shape[1]


def test_a_table_figure_draws_one_profile_panel_per_class():
    samples = np.stack([np.linspace(0.0, 1.0, 9), np.linspace(1.0, 0.0, 9)]).astype("float32")
    figure = images.sample_figure(samples, rows=1)  # one class: one row, one panel
    assert figure.shape == (images.PANEL[1], images.PANEL[0], 3)
    inside = figure[2:-2, 2:-2]  # within the panel's grey border
    assert np.sum(np.any(inside < 200, axis=-1)) > 100  # the lines are drawn
    two = images.sample_figure(np.concatenate([samples, samples]), rows=2, real=np.concatenate(
        [samples, samples]))
    assert two.shape == (2 * images.PANEL[1], images.PANEL[0], 3)


def test_sample_grid_writes_a_png_and_a_tensorboard_image(tmp_path):
    model = make_model()
    path = tmp_path / "samples.png"
    grid = callbacks.SynthesisMonitor(str(path), samples_per_class=3, log_dir=str(tmp_path / "tb"),
                                epoch_path=str(tmp_path / "grids" / "epoch-{epoch:03d}.png"))
    model.fit(make_dataset(count=64), epochs=2, shuffle=False, verbose=0, callbacks=[grid])
    png = tf.io.decode_png(path.read_bytes()).numpy()
    assert png.shape == (2 * 8, 3 * 8, 1)
    kept = sorted(p.name for p in (tmp_path / "grids").iterdir())
    assert kept == ["epoch-001.png", "epoch-002.png"]
    assert (tmp_path / "grids" / "epoch-002.png").read_bytes() == path.read_bytes()  # the latest
    assert list((tmp_path / "tb").iterdir())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_sample_grid_every_n_epochs_and_after_the_last(tmp_path):
    model = make_model()
    grid = callbacks.SynthesisMonitor(samples_per_class=2, every=2,
                                      epoch_path=str(tmp_path / "epoch-{epoch:03d}.png"))
    history = model.fit(make_dataset(count=64), epochs=5, shuffle=False, verbose=0,
                        callbacks=[grid])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch-002.png", "epoch-004.png", "epoch-005.png"]
    assert len(history.history["synthesis_accuracy"]) == 3
    assert len(history.history["loss"]) == 5
    with pytest.raises(ValueError, match="every must be an int >= 1. Received: every=0"):
        callbacks.SynthesisMonitor(every=0)


def test_saturation_counts_values_at_either_end():
    values = np.array([0.0, 0.5, 1.0, 0.999, 1e-8, np.nan])
    # 0, 1, 1e-8 (within tolerance of 0) and NaN are at an end: 4 of 6.
    assert callbacks.saturation(values, (0.0, 1.0)) == pytest.approx(4 / 6)
    assert callbacks.saturation(np.array([-1.0, 0.0]), (-1.0, 1.0)) == 0.5


def test_synthesis_monitor_logs_its_measures_to_history_and_tensorboard(tmp_path):
    model = make_model()
    real_images, real_labels = make_images(64, seed=1)
    monitor = callbacks.SynthesisMonitor(samples_per_class=4, real_images=real_images,
                                         real_labels=real_labels)
    history = model.fit(make_dataset(count=64), epochs=2, shuffle=False, verbose=0,
                        callbacks=[monitor, keras.callbacks.TensorBoard(str(tmp_path / "tb"))])
    # The same samples, measured by hand.
    labels = np.repeat([0, 1], 4)
    samples = model.synthesize(labels, seed=0).numpy()
    accuracy = np.mean(np.argmax(model.network(samples), -1) == labels)
    flat, real = samples.reshape(8, -1), real_images.reshape(64, -1)
    diversity = np.mean([keras_icn.quality.diversity(flat[labels == k], real[real_labels == k])
                         for k in (0, 1)])
    assert history.history["synthesis_accuracy"][-1] == pytest.approx(accuracy)
    assert history.history["synthesis_diversity"][-1] == pytest.approx(diversity, rel=1e-5)
    assert history.history["synthesis_saturation"][-1] == pytest.approx(
        callbacks.saturation(samples, (0.0, 1.0)))
    assert diversity > 0.0
    summaries = [str(p) for p in (tmp_path / "tb").rglob("*") if p.is_file()]
    tags = {value.tag for path in summaries for event in tf.compat.v1.train.summary_iterator(path)
            for value in event.summary.value}
    assert {"epoch_synthesis_accuracy", "epoch_synthesis_diversity"} <= tags
    assert monitor.warnings == []


def test_degenerate_synthesis_is_warned_about_with_the_epoch_and_setting():
    # A huge step throws every pixel to an end of the value range.
    model = make_model(step_size=1e6, noise_stddev=0.0)
    real_images, real_labels = make_images(64, seed=1)
    monitor = callbacks.SynthesisMonitor(samples_per_class=4, real_images=real_images,
                                         real_labels=real_labels)
    model.fit(make_dataset(count=64), epochs=2, shuffle=False, verbose=0, callbacks=[monitor])
    saturated = [w for w in monitor.warnings if "at the ends of value_range" in w]
    assert [w.split(":")[0] for w in saturated] == ["Epoch 1", "Epoch 2"]
    assert "Lower step_size (now 1000000.0)" in saturated[0]
    # Chains that barely move leave the batch's images labelled with another
    # class: once the classifier is right, no pseudo-negative is accepted.
    model = make_model(step_size=1e-9, noise_stddev=0.0)
    monitor = callbacks.SynthesisMonitor(samples_per_class=2)
    history = model.fit(make_dataset(), epochs=3, shuffle=False, verbose=0, callbacks=[monitor])
    pinned = [e + 1 for e, a in enumerate(history.history["pseudo_negative_acceptance"])
              if a <= 0.01]
    assert pinned and monitor.warnings == [
        f"Epoch {e}: pseudo-negative acceptance was 0.000 for the whole epoch: the chains "
        "never reach their class. Raise num_langevin_steps (now 5) or step_size (now 1e-09)."
        for e in pinned]


def test_divergence_guard_stops_at_the_first_non_finite_loss():
    # Linear, so NaN inputs reach the loss (ReLU would map them to 0).
    linear = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    model = keras_icn.IntrospectiveClassifier(linear, 2, mode="baseline")
    model.compile(jit_compile=False)
    images_, labels = make_images(64)
    images_[40:] = np.nan  # batches 2 and 3 of 16
    guard = callbacks.DivergenceGuard()
    history = model.fit(images_, labels, batch_size=16, epochs=3, shuffle=False, verbose=0,
                        callbacks=[guard])
    assert guard.error.startswith("Training diverged at step 2: the loss is nan")
    assert len(history.epoch) == 1 and int(model.optimizer.iterations.numpy()) == 3


def test_non_finite_pseudo_negatives_never_reach_the_pool():
    model = make_model(synthesis="fresh")  # chains from p_0
    images_, labels = make_images(64)
    images_[40:] = np.nan  # poisons p_0 from step 2 on
    guard = callbacks.DivergenceGuard()
    model.fit(images_, labels, batch_size=16, epochs=3, shuffle=False, verbose=0,
              callbacks=[guard])
    assert guard.error.startswith("Training diverged at step 2: Langevin dynamics produced")
    assert int(model.pool.count.numpy()) == 2 * model.synthesis_batch_size
    assert np.all(np.isfinite(model.pool.images.numpy()))


def test_write_json_is_atomic_and_replaces(tmp_path):
    path = str(tmp_path / "m.json")
    files.write_json(path, {"a": 1})
    files.write_json(path, {"a": 2})
    assert (tmp_path / "m.json").read_text() == '{\n  "a": 2\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]

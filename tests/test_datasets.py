"""keras_icn.datasets: one view of TFDS images and array sources; known classes."""

import numpy as np
import pytest

import keras_icn
from keras_icn import datasets, evaluation
from conftest import tfds_data_dir
from test_inputs import table_network


def write_npz(tmp_path, classes=4, count=120):
    rng = np.random.default_rng(0)
    y = np.arange(count) % classes
    x = (rng.normal(size=(count, 5)) + 3.0 * y[:, None]).astype("float32")
    path = tmp_path / "four.npz"
    np.savez(path, x=x, y=y, x_test=x + 0.1, y_test=y)
    return f"npz:{path}", x, y


def test_known_classes_are_relabelled_in_their_order_and_the_rest_are_unknown(tmp_path):
    name, x, y = write_npz(tmp_path)
    dataset = datasets.open_dataset(name, known_classes=(3, 1))
    assert dataset.class_names == ["3", "1"] and dataset.num_classes == 2
    # Sliced first, then filtered: train[:60] holds 15 of each class.
    assert dataset.num_examples("train[:60]") == 30
    np.testing.assert_array_equal(dataset.labels("train[:8]"), [1, 0, 1, 0])
    model = keras_icn.IntrospectiveClassifier(table_network(), 2, value_range=None)
    inputs, labels = dataset.arrays("test", model)
    np.testing.assert_array_equal(inputs, (x + 0.1)[(y == 3) | (y == 1)])
    assert set(labels) == {0, 1} and np.all(labels[y[(y == 3) | (y == 1)] == 3] == 0)
    stream = dataset.examples("test", model)
    streamed = list(stream.as_numpy_iterator())
    np.testing.assert_array_equal([label for _, label in streamed], labels)
    assert int(stream.cardinality()) == len(labels)  # Keras knows an epoch's steps
    unknown, original = dataset.unknown_arrays("test", model)
    assert set(original) == {0, 2} and len(unknown) == 60
    # Standardization sees the known classes' training examples only.
    mean, _ = dataset.model_units("train")["standardization"]
    np.testing.assert_allclose(mean, x[(y == 3) | (y == 1)].mean(0), rtol=1e-5)
    assert datasets.open_dataset(name).unknown_arrays("test", model) is None


@pytest.mark.parametrize("known", [(), (0, 0), (0, 9)])
def test_bad_known_classes_are_refused(tmp_path, known):
    name, _, _ = write_npz(tmp_path)
    with pytest.raises(ValueError, match="known_classes must be one or more different labels"):
        datasets.open_dataset(name, known_classes=known)


def test_one_known_class_is_a_one_class_dataset(tmp_path):
    name, x, y = write_npz(tmp_path)
    dataset = datasets.open_dataset(name, known_classes=(2,))
    assert dataset.num_classes == 1 and dataset.class_names == ["2"]
    inputs, labels = dataset.arrays("test", None)
    np.testing.assert_array_equal(inputs, (x + 0.1)[y == 2])
    assert set(labels) == {0}
    unknown, original = dataset.unknown_arrays("test", None)
    assert set(original) == {0, 1, 3} and len(unknown) == 90


def test_tfds_images_and_their_known_classes():
    dataset = datasets.open_dataset("mnist", tfds_data_dir(), known_classes=(7, 2))
    assert dataset.kind == "image" and dataset.input_shape == (28, 28, 1)
    assert dataset.class_names == ["7", "2"]
    labels = dataset.labels("test[:200]")
    full = datasets.open_dataset("mnist", tfds_data_dir()).labels("test[:200]")
    np.testing.assert_array_equal(labels, np.where(full[np.isin(full, (7, 2))] == 7, 0, 1))


def test_open_set_measures_on_a_fixture():
    known, unknown = np.array([0.9, 0.8, 0.7, 0.6]), np.array([0.85, 0.1])
    assert evaluation.fpr_at_tpr(known, unknown, tpr=0.75) == 0.5  # threshold 0.675
    # Perfectly separated and always correct: OSCR 1; all wrong: 0.
    assert evaluation.open_set_classification_rate([2, 3], np.array([True, True]),
                                                   [0, 1]) == pytest.approx(1.0)
    assert evaluation.open_set_classification_rate([2, 3], np.array([False, False]), [0, 1]) == 0


def test_evaluate_scores_the_held_out_classes_as_unknown(tmp_path):
    name, _, _ = write_npz(tmp_path)
    dataset = datasets.open_dataset(name, known_classes=(0, 1, 2))
    model = keras_icn.IntrospectiveClassifier(
        table_network_for(3), 3, prior="gaussian", mode="baseline",
        **dataset.model_units("train", bounded=False))
    model.compile(optimizer="adam", jit_compile=False)
    x, y = dataset.arrays("train", model)
    model.fit(x, y, epochs=30, batch_size=30, verbose=0)
    from keras_icn import reference

    judge = reference.load_or_train(name, directory=str(tmp_path / "reference"))
    assert judge.layers[1].name.startswith("normalization")  # takes raw units
    report = evaluation.evaluate(model, name, epsilons=[0.1], samples_per_class=4,
                                 known_classes=(0, 1, 2), reference=judge)
    quality = report["synthesis_quality"]  # in the reference's features, for tables too
    assert set(quality) == {"samples", "real_images"}
    assert np.isfinite(quality["samples"]["overall"]["frechet_distance"])
    assert len(list((tmp_path / "reference").glob("npz_*four.npz.keras"))) == 1
    assert report["examples"] == 90 and report["open_set"]["unknown_examples"] == 30
    for score in ("max_softmax", "max_logit", "logsumexp"):
        assert 0.0 <= report["open_set"][score]["auroc"] <= 1.0
    # The same as scoring the known and the held-out test examples by hand.
    known = evaluation.ood_scores(model.predict(dataset.arrays("test", model)[0], verbose=0))
    unknown = evaluation.ood_scores(
        model.predict(dataset.unknown_arrays("test", model)[0], verbose=0))
    for score in known:
        assert report["open_set"][score]["auroc"] == pytest.approx(
            evaluation.auroc(known[score], unknown[score]), abs=1e-6)
        assert report["open_set"][score]["fpr_at_95_tpr"] == pytest.approx(
            evaluation.fpr_at_tpr(known[score], unknown[score]))


def table_network_for(classes):
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((5,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(classes)])

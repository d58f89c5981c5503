"""keras_icn.sources: bundled sensor series and tables, the user's CSV/NPZ/.ts files."""

import sys

import numpy as np
import pytest

from keras_icn import datasets, sources


def class_counts(source):
    k = len(source.class_names)
    return np.bincount(source.y_train, minlength=k), np.bincount(source.y_test, minlength=k)


def check_types(source):
    assert source.x_train.dtype == source.x_test.dtype == np.float32
    assert source.y_train.dtype == source.y_test.dtype == np.int32
    assert source.x_train.shape[1:] == source.x_test.shape[1:] == source.input_shape


def test_basic_motions_is_the_files_split_time_major():
    source = sources.load("basic_motions")
    check_types(source)
    assert source.input_shape == (100, 6)
    assert (len(source.x_train), len(source.x_test)) == (40, 40)
    assert source.class_names == ["Standing", "Running", "Walking", "Badminton"]
    train, test = class_counts(source)
    assert train.tolist() == test.tolist() == [10, 10, 10, 10]
    # The training file's first value: first case, first channel, first step.
    assert source.x_train[0, 0, 0] == np.float32(0.079106)
    assert source.x_train[0, 0, 1] != source.x_train[0, 1, 0]  # not channel-major


def test_plaid_is_resampled_to_a_fixed_length():
    source = sources.load("plaid")
    check_types(source)
    assert source.input_shape == (256, 1)
    assert (len(source.x_train), len(source.x_test)) == (537, 537)
    assert len(source.class_names) == 11 and source.class_names[0] == "air conditioner"
    assert all(n > 0 for n in class_counts(source)[0])
    assert "100..1344 steps resampled to 256 by linear interpolation" in source.description
    assert "each series z-normalized" in source.description
    np.testing.assert_allclose(source.x_train.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(source.x_train.std(axis=1), 1, atol=1e-3)
    raw = sources.load("plaid", normalize=None)
    # The first training series begins 0.17339 (resampling keeps both end points).
    assert raw.x_train[0, 0, 0] == pytest.approx(0.17339)
    first = raw.x_train[0, :, 0]
    assert source.x_train[0, 0, 0] == pytest.approx((first[0] - first.mean()) / first.std(), rel=1e-4)
    assert sources.load("plaid", length=64).input_shape == (64, 1)
    with pytest.raises(ValueError, match="normalize must be None or 'series'. Received: normalize='z'"):
        sources.load("plaid", normalize="z")


def test_breast_cancer_is_a_seeded_stratified_split():
    source = sources.load("breast_cancer")
    check_types(source)
    assert source.input_shape == (30,)
    assert source.class_names == ["malignant", "benign"]
    train, test = class_counts(source)
    assert (train + test).tolist() == [212, 357]
    assert test.tolist() == [64, 107]  # 30% of each class, rounded
    again = sources.load("breast_cancer")
    np.testing.assert_array_equal(again.x_test, source.x_test)
    other = sources.load("breast_cancer", seed=1)
    assert not np.array_equal(other.x_test, source.x_test)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="river >= 0.26.1 needs Python >= 3.11")
def test_shuttle_is_a_small_balanced_training_set_and_a_stratified_test_set():
    source = sources.load("shuttle")
    check_types(source)
    assert source.input_shape == (9,)
    assert source.class_names == ["normal", "anomaly"]
    train, test = class_counts(source)
    assert train.tolist() == [100, 100]
    # 2000 of the other rows in their proportions: 2000 * 3411 / 48897 = 139.5 anomalies.
    assert test.tolist() == [1860, 140]
    assert "49097 rows" in source.description and "no class dropped" in source.description


def test_unknown_names_and_options_are_named():
    with pytest.raises(ValueError, match=r"'mnist'.*basic_motions.*csv:PATH, npz:PATH, ts:PATH"):
        sources.load("mnist")
    with pytest.raises(TypeError, match=r"\['length'\].*\['seed'\]"):
        sources.load("basic_motions", seed=3)


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[series\]"'):
        sources.load("breast_cancer")


def write_csv(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return f"csv:{path}"


def table_lines(rows=20):
    lines = ["width,height,kind"]
    for i in range(rows):
        kind = ("pear", "apple")[i % 2]
        lines.append(f"{i * 0.5},{10 + i},{kind}")
    return lines


def test_csv_numeric_columns_and_string_labels(tmp_path):
    source = sources.load(write_csv(tmp_path / "t.csv", table_lines()), label_column="kind")
    check_types(source)
    assert source.input_shape == (2,)
    assert source.class_names == ["apple", "pear"]  # sorted
    assert (len(source.x_train), len(source.x_test)) == (14, 6)  # 25% of 10 per class: 2.5 -> 3
    for x, y in zip(source.x_train, source.y_train):  # labels follow their rows
        assert source.class_names[y] == ("pear", "apple")[int(x[1] - 10) % 2]


def test_csv_errors_name_the_column(tmp_path):
    lines = table_lines()
    name = write_csv(tmp_path / "t.csv", lines)
    with pytest.raises(ValueError, match=r"label_column='label'.*\['width', 'height', 'kind'\]"):
        sources.load(name, label_column="label")
    with pytest.raises(ValueError, match=r"label_column=None"):
        sources.load(name)
    with pytest.raises(ValueError, match=r"Column 'kind' .* not numeric"):
        sources.load(name, label_column="width")
    lines[3] = "nan,12,apple"
    with pytest.raises(ValueError, match=r"non-finite .*'width': 1"):
        sources.load(write_csv(tmp_path / "nan.csv", lines), label_column="kind")


def test_csv_split_column_is_honoured(tmp_path):
    lines = ["a,b,label,split", "1,2,0,train", "3,4,1,train", "5,6,1,test", "7,8,0,test",
             "9,10,1,train"]
    source = sources.load(write_csv(tmp_path / "s.csv", lines), label_column="label")
    assert source.x_train.tolist() == [[1, 2], [3, 4], [9, 10]]
    assert source.x_test.tolist() == [[5, 6], [7, 8]]
    assert source.y_test.tolist() == [1, 0]
    assert "own split: 3 train / 2 test" in source.description
    lines.append("11,12,2,test")  # class 2 only in the test split
    with pytest.raises(ValueError, match=r"\['2'\] .* no training example"):
        sources.load(write_csv(tmp_path / "only_test.csv", lines), label_column="label")


def test_npz_with_and_without_its_own_split(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 5, 3)), np.repeat([3, 7, 9], 10)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    source = sources.load(f"npz:{tmp_path / 'a.npz'}")
    check_types(source)
    assert source.input_shape == (5, 3) and source.class_names == ["3", "7", "9"]
    assert (len(source.x_train), len(source.x_test)) == (21, 9)
    np.savez(tmp_path / "b.npz", x=x, y=y, x_test=x[:4], y_test=y[:4])
    own = sources.load(f"npz:{tmp_path / 'b.npz'}")
    assert (len(own.x_train), len(own.x_test)) == (30, 4)
    np.testing.assert_allclose(own.x_test, x[:4].astype(np.float32))
    np.savez(tmp_path / "c.npz", x=x, labels=y)
    with pytest.raises(ValueError, match=r"missing \['y'\]. Received arrays: \['labels', 'x'\]"):
        sources.load(f"npz:{tmp_path / 'c.npz'}")


RAGGED_TS = """# two channels, series of 3 to 5 steps
@problemName Tiny
@timeStamps false
@univariate false
@dimensions 2
@equalLength false
@classLabel true up down
@data
1,2,3:4,5,6:up
1,2,3,4,5:5,4,3,2,1:down
0,1,2,3:0,1,2,3:up
9,8,7,6,5:5,6,7,8,9:down
"""


def test_ragged_ts_needs_a_length(tmp_path):
    path = tmp_path / "Tiny_TRAIN.ts"
    path.write_text(RAGGED_TS)
    with pytest.raises(ValueError, match=r"3\.\.5 steps; resample .*--series_length=5 \(tools\)"):
        sources.load(f"ts:{path}")
    source = sources.load(f"ts:{path}", length=5, test_fraction=0.5)
    check_types(source)
    assert source.input_shape == (5, 2) and source.class_names == ["up", "down"]
    assert (len(source.x_train), len(source.x_test)) == (2, 2)
    (tmp_path / "Tiny_TEST.ts").write_text(RAGGED_TS)  # now the files' own split
    both = sources.load(f"ts:{path}", length=5)
    assert (len(both.x_train), len(both.x_test)) == (4, 4)
    # 1,2,3 resampled to 5 steps: 1, 1.5, 2, 2.5, 3 (channel 0), 4..6 (channel 1).
    np.testing.assert_allclose(both.x_train[0, :, 0], [1, 1.5, 2, 2.5, 3])
    np.testing.assert_allclose(both.x_train[0, :, 1], [4, 4.5, 5, 5.5, 6])
    # The same through the settings a tool takes.
    dataset = datasets.open_dataset(f"ts:{path}", series_length=5)
    assert dataset.input_shape == (5, 2)
    with pytest.raises(ValueError, match="series_length resamples series.*'breast_cancer' holds none"):
        datasets.open_dataset("breast_cancer", series_length=5)


def test_source_validation():
    x, y = np.zeros((4, 3)), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"\[2\]"):
        sources.Source("s", x, np.array([0, 1, 2, 1]), x, y, ["a", "b"], (3,))
    bad = np.zeros((4, 3))
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"x_test of 's' has 1 non-finite"):
        sources.Source("s", x, y, bad, y, ["a", "b"], (3,))
    with pytest.raises(ValueError, match=r"x_test must have shape .* \(4, 3\). Received: \(4, 2"):
        sources.Source("s", x, y, np.zeros((4, 2)), y, ["a", "b"], (3,))


def test_standardization_and_bounds_use_the_training_split_only():
    source = sources.load("basic_motions")
    mean, std = sources.standardization(source)
    assert mean.shape == std.shape == (6,) and mean.dtype == np.float32
    np.testing.assert_allclose(mean, source.x_train.astype(np.float64).mean(axis=(0, 1)), rtol=1e-5)
    np.testing.assert_allclose(std, source.x_train.astype(np.float64).std(axis=(0, 1)), rtol=1e-5)
    both = np.concatenate([source.x_train, source.x_test])
    assert not np.allclose(mean, both.mean(axis=(0, 1)), rtol=1e-3)
    low, high = sources.value_bounds(source, margin=0.1)
    lo, hi = source.x_train.min(axis=(0, 1)), source.x_train.max(axis=(0, 1))
    np.testing.assert_allclose(low, lo - 0.1 * (hi - lo), rtol=1e-5)
    np.testing.assert_allclose(high, hi + 0.1 * (hi - lo), rtol=1e-5)
    table = sources.Source("t", np.array([[1.0, 5], [3, 5]]), np.array([0, 1]),
                           np.array([[100.0, 0]]), np.array([0]), ["a", "b"], (2,))
    mean, std = sources.standardization(table)
    np.testing.assert_allclose(mean, [2, 5])
    np.testing.assert_allclose(std, [1, 1e-6])  # a constant feature's std is floored
    low, high = sources.value_bounds(table, margin=0.5)
    np.testing.assert_allclose(low, [0, 2.5])  # constant 5: widened by 0.5 * |5|, not by 0
    np.testing.assert_allclose(high, [4, 7.5])

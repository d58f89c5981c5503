"""Where labelled arrays come from: sensor series and measurement tables as one `Source`.

Bundled datasets ship inside PyPI wheels, so nothing is downloaded: `basic_motions` and
`plaid` (UCR/UEA `.ts` files in sktime's wheel, read by this module's own parser),
`breast_cancer` (scikit-learn) and `shuttle` (river); `pip install -e ".[series]"` brings
them. Your own files load as `csv:PATH`, `npz:PATH` or `ts:PATH` with numpy and the
standard library alone. Series are time-major, one example is (T, C); a table row is (F,).
"""

import csv
import dataclasses
import importlib
import importlib.util
import inspect
import os

import numpy as np

FILE_FORMS = ("csv:PATH", "npz:PATH", "ts:PATH")
# PLAID's classes 0..10, named in its .ts header comment.
PLAID_APPLIANCES = ("air conditioner", "compact fluorescent lamp", "fan", "fridge", "hairdryer",
                    "heater", "incandescent light bulb", "laptop", "microwave", "vacuum",
                    "washing machine")


@dataclasses.dataclass(frozen=True, eq=False)
class Source:
    """Labelled arrays with their train/test split.

    Attributes:
        name: what `load` was given, e.g. `"plaid"` or `"csv:runs.csv"`.
        x_train, x_test: float32, shape (N,) + input_shape.
        y_train, y_test: int32 labels in 0..K-1, K = len(class_names).
        class_names: the name of each label, in label order.
        input_shape: one example's shape: (T, C) for series, (F,) for tables.
        description: where the arrays came from; how they were split, resampled, subsampled.

    Raises:
        ValueError: non-finite values, labels out of range, a class without a training
            example, an empty split, or shapes that disagree.
    """

    name: str
    x_train: np.ndarray = dataclasses.field(repr=False)
    y_train: np.ndarray = dataclasses.field(repr=False)
    x_test: np.ndarray = dataclasses.field(repr=False)
    y_test: np.ndarray = dataclasses.field(repr=False)
    class_names: list
    input_shape: tuple
    description: str = ""

    def __post_init__(self):
        put = lambda key, value: object.__setattr__(self, key, value)  # noqa: E731 (frozen)
        put("input_shape", tuple(int(d) for d in self.input_shape))
        put("class_names", [str(c) for c in self.class_names])
        k = len(self.class_names)
        if not self.input_shape:
            raise ValueError(f"Examples of {self.name!r} must have at least one axis (a table "
                             "row (F,), a series (T, C)). Received: input_shape=()")
        for split in ("train", "test"):
            x, y = np.asarray(getattr(self, f"x_{split}")), np.asarray(getattr(self, f"y_{split}"))
            if len(y) == 0:
                raise ValueError(f"The {split} split of {self.name!r} is empty; give it at least "
                                 "one example (or use a seeded split: omit the file's own).")
            if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"y_{split} must be 1-D integer labels. Received: dtype "
                                 f"{y.dtype}, shape {y.shape}")
            if x.shape[1:] != self.input_shape or len(x) != len(y):
                raise ValueError(f"x_{split} must have shape (len(y_{split}),) + input_shape = "
                                 f"{(len(y),) + self.input_shape}. Received: {x.shape}")
            x = x.astype(np.float32)
            bad = x.size - np.count_nonzero(np.isfinite(x))
            if bad:
                raise ValueError(f"x_{split} of {self.name!r} has {bad} non-finite values (NaN "
                                 "or inf); drop or fill those rows (or steps) before loading.")
            outside = np.unique(y[(y < 0) | (y >= k)])
            if outside.size:
                raise ValueError(f"y_{split} must hold labels 0..{k - 1} (len(class_names) = "
                                 f"{k}). Received: {outside[:10].tolist()}")
            put(f"x_{split}", x)
            put(f"y_{split}", y.astype(np.int32))
        counts = np.bincount(self.y_train, minlength=k)
        empty = [c for c, n in zip(self.class_names, counts) if n == 0]
        if empty:
            raise ValueError(f"Class(es) {empty} of {self.name!r} have no training example (only "
                             "test ones); move some of their examples to training, or drop them.")


def load(name, **options):
    """Loads a bundled dataset or a file as a `Source`.

    Args:
        name: `"basic_motions"` (options: `length`), `"plaid"` (`length=256`,
            `normalize="series"`: each series z-normalized),
            `"breast_cancer"` (`test_fraction=0.3, seed=0`), `"shuttle"`
            (`train_per_class=100, test_size=2000, seed=0`), `"csv:PATH"` (`label_column`,
            required; `test_fraction=0.25, seed=0`), `"npz:PATH"` (`test_fraction, seed`)
            or `"ts:PATH"` (`length, normalize, test_fraction, seed`).
        **options: the options of that form (above).

    Raises:
        ValueError: unknown name, or a file that does not hold what its form needs.
        TypeError: an option that form does not take.
        ImportError: a bundled dataset whose package is not installed.
        FileNotFoundError: a file that does not exist.
    """
    kind, colon, path = str(name).partition(":")
    if name in _BUNDLED:
        loader, args = _BUNDLED[name], (name,)
    elif colon and kind in _FILES and path:
        loader, args = _FILES[kind], (name, os.path.expanduser(path))
        if not os.path.isfile(args[1]):
            raise FileNotFoundError(f"No file {args[1]!r}. Received: {name!r}")
    else:
        raise ValueError(f"Unknown source {name!r}. Known: {', '.join(_BUNDLED)}, or a file as "
                         f"{', '.join(FILE_FORMS)}.")
    accepted = [p.name for p in inspect.signature(loader).parameters.values()
                if p.kind == p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"load({name!r}) takes options {accepted}. Received: {unknown}")
    return loader(*args, **options)


def standardization(source, epsilon=1e-6):
    """Per-feature mean and std of the training split only (the test split is not seen).

    Statistics are taken over every axis but the last: per channel over examples and
    steps for series (N, T, C), per feature for tables (N, F).

    Args:
        source: a `Source` (its training split), or an array of training examples.
        epsilon: floor of the std, so a constant feature does not divide by zero.

    Returns:
        (mean, std), float32 of shape (input_shape[-1],), which broadcasts against one example.
    """
    x = _training_examples(source).astype(np.float64)
    axes = tuple(range(x.ndim - 1))
    std = np.maximum(x.std(axis=axes), epsilon)
    return x.mean(axis=axes).astype(np.float32), std.astype(np.float32)


def value_bounds(source, margin=0.1):
    """Per-feature low and high: the training split's range, widened on each side.

    Args:
        source: a `Source` (its training split), or an array of training examples;
            reduced like `standardization` (per channel for series).
        margin: each side is widened by `margin` times the feature's range (max - min);
            a constant feature by `margin` times max(|value|, 1), so low < high.

    Returns:
        (low, high), float32 of shape (input_shape[-1],).
    """
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0. Received: margin={margin!r}")
    x = _training_examples(source)
    axes = tuple(range(x.ndim - 1))
    low = x.min(axis=axes).astype(np.float64)
    high = x.max(axis=axes).astype(np.float64)
    pad = margin * np.where(high > low, high - low, np.maximum(np.abs(high), 1.0))
    return (low - pad).astype(np.float32), (high + pad).astype(np.float32)


def is_source(name):
    """Whether `load` takes `name` (a bundled dataset or a file form), not TFDS."""
    kind, colon, path = str(name).partition(":")
    return name in _BUNDLED or bool(colon and kind in _FILES and path)


def split(source, which):
    """`(x, y)` of a split: `"test"`, or `"train"` with an optional slice of its
    examples as TFDS writes it (`"train[:300]"`, `"train[300:]"`)."""
    if which == "test":
        return source.x_test, source.y_test
    name, bracket, rest = which.partition("[")
    if name != "train" or (bracket and not rest.endswith("]")):
        raise ValueError(f"A split is 'test', 'train' or 'train[a:b]'. Received: {which!r}")
    if not bracket:
        return source.x_train, source.y_train
    start, colon, stop = rest[:-1].partition(":")
    if not colon or not all(part.strip().lstrip("-").isdigit() or not part.strip()
                            for part in (start, stop)):
        raise ValueError(f"A split is 'test', 'train' or 'train[a:b]'. Received: {which!r}")
    part = slice(int(start) if start.strip() else None, int(stop) if stop.strip() else None)
    return source.x_train[part], source.y_train[part]


def _training_examples(source):
    return source.x_train if isinstance(source, Source) else np.asarray(source)


def _require(module, package):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f'This dataset needs {package}: pip install -e ".[series]" (or pip '
                          f"install {package})") from error


def _encode(labels, order=None, where="labels"):
    """String labels -> (int32 codes, class names); names in `order`, else sorted."""
    labels = [str(v).strip() for v in labels]
    names = list(order) if order else sorted(set(labels))
    if not order and all(s.lstrip("-").isdigit() for s in names):
        names.sort(key=int)
    index = {s: i for i, s in enumerate(names)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ValueError(f"{where} holds labels its header does not declare ({names}). "
                         f"Received: {unknown[:10]}")
    return np.array([index[s] for s in labels], np.int32), names


def _split(y, test_fraction, seed):
    """Seeded stratified (train, test) indices: per class round(test_fraction * n), < n."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1). Received: {test_fraction!r}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        n = min(int(np.floor(test_fraction * len(rows) + 0.5)), len(rows) - 1)
        test.append(rows[:n])
        train.append(rows[n:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _seeded(name, x, y, names, test_fraction, seed, about):
    train, test = _split(y, test_fraction, seed)
    return Source(name, x[train], y[train], x[test], y[test], names, x.shape[1:],
                  f"{about}; stratified seeded split: {test_fraction:g} of each class to test "
                  f"(seed {seed}): {len(train)} train / {len(test)} test.")


def _read_ts(path):
    """A UCR/UEA .ts file -> (cases: lists of per-channel float64 arrays, labels, class order)."""
    cases, labels, order, labelled, in_data = [], [], None, None, False
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                key, _, rest = line.partition(" ")
                key, rest = key.lower(), rest.split()
                if key == "@timestamps" and rest[:1] == ["true"]:
                    raise ValueError(f"{path}: .ts files with timestamps are not supported.")
                if key == "@classlabel":
                    labelled, order = rest[:1] == ["true"], rest[1:] or None
                in_data = key == "@data"
                if not key.startswith("@"):
                    raise ValueError(f"{path}:{lineno}: expected '@' header lines, '#' comments, "
                                     f"then '@data'. Received: {line[:60]!r}")
                continue
            if not labelled:
                raise ValueError(f"{path}: keras-icn needs labelled series ('@classLabel true "
                                 "...' before '@data').")
            *channels, label = line.split(":")
            try:
                cases.append([np.array(c.replace("?", "nan").split(","), np.float64)
                              for c in channels])
            except ValueError:
                raise ValueError(f"{path}:{lineno}: non-numeric value in a series. Received: "
                                 f"{line[:60]!r}") from None
            labels.append(label)
    if not cases:
        raise ValueError(f"{path}: no series (no '@data' section, or it is empty).")
    channels = sorted({len(case) for case in cases})
    if len(channels) > 1:
        raise ValueError(f"{path}: every series needs the same number of channels. "
                         f"Received: {channels}")
    return cases, labels, order


def _from_ts(name, train_path, test_path, length, test_fraction=0.25, seed=0, about=None,
             normalize=None):
    cases, labels, order = _read_ts(train_path)
    n_train = len(cases)
    if test_path:
        more, more_labels, _ = _read_ts(test_path)
        cases, labels = cases + more, labels + more_labels
    y, names = _encode(labels, order, train_path)
    lengths = [len(c) for case in cases for c in case]
    shortest, longest = min(lengths), max(lengths)
    if length is None and shortest != longest:
        raise ValueError(f"{train_path} holds series of {shortest}..{longest} steps; resample "
                         f"each to one length by linear interpolation: --series_length="
                         f"{longest} (tools), or load({name!r}, length={longest}).")
    if length is not None and not (isinstance(length, (int, np.integer)) and length >= 2):
        raise ValueError(f"length must be an int >= 2. Received: length={length!r}")
    t = length or longest
    resample = lambda c: c if len(c) == t else np.interp(  # noqa: E731
        np.linspace(0, len(c) - 1, t), np.arange(len(c)), c)
    x = np.stack([np.stack([resample(c) for c in case], axis=-1) for case in cases])
    about = about or f"series from {os.path.basename(train_path)}"
    if length is not None:
        about += (f", {shortest}..{longest} steps resampled to {length} by linear "
                  f"interpolation")
    if normalize == "series":  # each channel of each series to mean 0, std 1 (UCR's convention)
        x = (x - x.mean(axis=1, keepdims=True)) / np.maximum(x.std(axis=1, keepdims=True), 1e-8)
        about += ", each series z-normalized"
    elif normalize is not None:
        raise ValueError(f"normalize must be None or 'series'. Received: normalize={normalize!r}")
    about += f"; shape (T={t}, C={x.shape[-1]}), time-major"
    if not test_path:
        return _seeded(name, x, y, names, test_fraction, seed, about)
    return Source(name, x[:n_train], y[:n_train], x[n_train:], y[n_train:], names, x.shape[1:],
                  f"{about}; the files' own split: {n_train} train / {len(y) - n_train} test.")


def _sktime_ts(problem):
    spec = importlib.util.find_spec("sktime")  # finds the wheel's files without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f'{problem} ships in sktime\'s wheel: pip install -e ".[series]"')
    base = os.path.join(spec.submodule_search_locations[0], "datasets", "data", problem)
    paths = [os.path.join(base, f"{problem}_{s}.ts") for s in ("TRAIN", "TEST")]
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is not in the installed sktime; reinstall it "
                                    'with pip install -e ".[series]"')
    return paths


def _basic_motions(name, *, length=None):
    return _from_ts(name, *_sktime_ts("BasicMotions"), length, about=(
        "BasicMotions (UEA, from sktime's wheel): a smart watch's 3-D accelerometer and 3-D "
        "gyroscope at 10 Hz for 10 s, classes standing/running/walking/badminton"))


def _plaid(name, *, length=256, normalize="series"):
    # The currents span six orders of magnitude (a series' std from 3e-5 to 95), so
    # the dataset-wide standardization every source gets leaves half of them flat:
    # the FCN reached 26% validation accuracy so, 76% with each series z-normalized
    # (docs/series-and-tables.md).
    source = _from_ts(name, *_sktime_ts("PLAID"), length, normalize=normalize, about=(
        "PLAID (UCR, from sktime's wheel): plug-load appliance current, one channel, 11 "
        "appliance types (names from the file's header comment)"))
    return dataclasses.replace(source, class_names=list(PLAID_APPLIANCES))


def _breast_cancer(name, *, test_fraction=0.3, seed=0):
    data = _require("sklearn.datasets", "scikit-learn").load_breast_cancer()
    return _seeded(name, data.data, data.target.astype(np.int32), list(data.target_names),
                   test_fraction, seed, "Wisconsin breast cancer (scikit-learn): 30 features "
                   "of cell nuclei, 0 = malignant, 1 = benign")


def _shuttle(name, *, train_per_class=100, test_size=2000, seed=0):
    rows = list(_require("river.datasets", "river").Shuttle())
    x = np.array([list(features.values()) for features, _ in rows], np.float64)  # f1..f9
    y = np.array([label for _, label in rows], np.int32)
    rng = np.random.default_rng(seed)
    shuffled = [rng.permutation(np.flatnonzero(y == c)) for c in (0, 1)]
    train = np.sort(np.concatenate([s[:train_per_class] for s in shuffled]))
    rest = [s[train_per_class:] for s in shuffled]
    left = np.array([len(r) for r in rest])
    share = np.floor(min(test_size, left.sum()) * left / left.sum() + 0.5).astype(int)
    test = np.sort(np.concatenate([r[:n] for r, n in zip(rest, share)]))
    return Source(name, x[train], y[train], x[test], y[test], ["normal", "anomaly"], (9,), (
        f"Statlog Shuttle as river ships it (ODDS anomaly version: {len(y)} rows, 9 integer "
        f"sensor readings; 0 = normal {len(shuffled[0])}, 1 = anomaly {len(shuffled[1])}; no "
        f"class dropped); train: up to {train_per_class} rows per class at random (seed "
        f"{seed}), {len(train)} in all; test: {len(test)} of the other rows, stratified in "
        f"proportion to their classes ({share[0]} normal, {share[1]} anomaly)."))


def _csv(name, path, *, label_column=None, test_fraction=0.25, seed=0):
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [row for row in csv.reader(f) if row]
    header = [h.strip() for h in rows[0]] if rows else []
    if label_column not in header:
        raise ValueError(f"load({name!r}) needs label_column= naming a column. Received: "
                         f"label_column={label_column!r}; the file's columns are {header}")
    for lineno, row in enumerate(rows[1:], 1):
        if len(row) != len(header):
            raise ValueError(f"{path}: data row {lineno} has {len(row)} fields, the header "
                             f"{len(header)}.")
    columns = {h: [row[i].strip() for row in rows[1:]] for i, h in enumerate(header)}
    features = [h for h in header if h not in (label_column, "split")]
    x = np.empty((len(rows) - 1, len(features)), np.float64)
    for j, h in enumerate(features):
        for i, value in enumerate(columns[h]):
            try:
                x[i, j] = float(value) if value else np.nan
            except ValueError:
                raise ValueError(f"Column {h!r} of {path} is not numeric (data row {i + 1}: "
                                 f"{value!r}); feature columns must be numbers: drop or encode "
                                 f"it, or name it as label_column.") from None
    bad = {h: int(n) for h, n in zip(features, (~np.isfinite(x)).sum(axis=0)) if n}
    if bad:
        raise ValueError(f"{path} has missing or non-finite values (count per column: {bad}); "
                         "drop or fill those rows before loading.")
    y, names = _encode(columns[label_column])
    about = f"table {os.path.basename(path)}: {len(features)} numeric columns"
    if "split" not in columns:
        return _seeded(name, x, y, names, test_fraction, seed, about)
    split = [s.lower() for s in columns["split"]]
    if not set(split) <= {"train", "test"}:
        raise ValueError(f"{path}'s 'split' column must hold train or test. Received: "
                         f"{sorted(set(split) - {'train', 'test'})[:10]}")
    a, b = np.array(split) == "train", np.array(split) == "test"
    return Source(name, x[a], y[a], x[b], y[b], names, x.shape[1:],
                  f"{about}; the file's own split: {a.sum()} train / {b.sum()} test.")


def _npz(name, path, *, test_fraction=0.25, seed=0):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    needed = ["x", "y"] + (["x_test", "y_test"] if {"x_test", "y_test"} & set(arrays) else [])
    missing = [k for k in needed if k not in arrays]
    if missing:
        raise ValueError(f"{path} needs arrays 'x' and 'y' (and optionally both 'x_test' and "
                         f"'y_test'); missing {missing}. Received arrays: {sorted(arrays)}")
    for xk, yk in zip(needed[::2], needed[1::2]):
        if arrays[xk].dtype.kind not in "biuf" or len(arrays[xk]) != len(arrays[yk]):
            raise ValueError(f"{path}: {xk!r} must be numbers, one example per label of "
                             f"{yk!r}. Received: {xk} {arrays[xk].dtype} {arrays[xk].shape}, "
                             f"{yk} {arrays[yk].shape}")
    x = arrays["x"]
    about = f"arrays {os.path.basename(path)}: examples of shape {x.shape[1:]}"
    if "x_test" not in arrays:
        y, names = _encode(arrays["y"].ravel())
        return _seeded(name, x, y, names, test_fraction, seed, about)
    y, names = _encode(np.concatenate([arrays["y"].ravel(), arrays["y_test"].ravel()]))
    return Source(name, x, y[:len(x)], arrays["x_test"], y[len(x):], names, x.shape[1:],
                  f"{about}; the file's own split: {len(x)} train / {len(y) - len(x)} test.")


def _ts(name, path, *, length=None, normalize=None, test_fraction=0.25, seed=0):
    stem, ext = os.path.splitext(path)
    tag = {"_TRAIN": "_TEST", "_train": "_test"}.get(stem[-6:])
    test = tag and stem[:-6] + tag + ext
    test = test if test and os.path.isfile(test) else None
    return _from_ts(name, path, test, length, test_fraction, seed, normalize=normalize)


# The forms whose series series_length (load's `length`) resamples.
SERIES_FORMS = ("basic_motions", "plaid", "ts")
_BUNDLED = {"basic_motions": _basic_motions, "plaid": _plaid, "breast_cancer": _breast_cancer,
            "shuttle": _shuttle}
_FILES = {"csv": _csv, "npz": _npz, "ts": _ts}

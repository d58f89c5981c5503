"""Strong models of another kind that the studies compare with, trained and
scored on the same examples: for tables, gradient-boosted trees, and with one
known class (anomaly detection) an isolation forest.

A neural network on a few hundred rows of measurements is not the obvious
choice; the anchor says what a tuned off-the-shelf model reaches there.
"""

import importlib

import numpy as np

from keras_icn import evaluation

# The grid searched by 5-fold cross-validation on the training examples.
GRID = {"learning_rate": [0.03, 0.1], "max_leaf_nodes": [7, 31], "max_iter": [100, 300]}


def gradient_boosting_error(x_train, y_train, x_test, y_test, seed=0):
    """Test error of scikit-learn's HistGradientBoostingClassifier, its settings
    chosen from `GRID` by stratified 5-fold cross-validation on the training
    examples (fewer folds where a class has fewer than 5)."""
    HistGradientBoostingClassifier = _sklearn("ensemble", "HistGradientBoostingClassifier")
    GridSearchCV = _sklearn("model_selection", "GridSearchCV")
    StratifiedKFold = _sklearn("model_selection", "StratifiedKFold")
    x_train = np.reshape(x_train, (len(x_train), -1))
    folds = int(min(5, np.bincount(y_train).min()))
    search = GridSearchCV(HistGradientBoostingClassifier(random_state=seed), GRID,
                          cv=StratifiedKFold(max(folds, 2), shuffle=True, random_state=seed))
    search.fit(x_train, y_train)
    predicted = search.predict(np.reshape(x_test, (len(x_test), -1)))
    return float(np.mean(predicted != y_test)), search.best_params_


def isolation_forest_auroc(x_train, x_known, x_unknown, seed=0):
    """AUROC of known against unknown inputs by scikit-learn's IsolationForest
    (default settings: 100 trees of up to 256 rows; `random_state=seed`) fitted
    on `x_train`, the rows of the known class, in raw units (an isolation
    forest's splits are uniform between a feature's extremes, so scaling a
    feature changes nothing). Higher `score_samples`: more normal, i.e. known."""
    forest = _sklearn("ensemble", "IsolationForest")(random_state=seed)
    forest.fit(np.reshape(x_train, (len(x_train), -1)))
    known, unknown = (forest.score_samples(np.reshape(x, (len(x), -1)))
                      for x in (x_known, x_unknown))
    return evaluation.auroc(known, unknown)


def _sklearn(module, name):
    """`sklearn.<module>.<name>`, or an ImportError that says how to install it."""
    try:
        return getattr(importlib.import_module(f"sklearn.{module}"), name)
    except ImportError as error:
        raise ImportError('The anchors of the table studies need scikit-learn: pip install -e '
                          '".[series]"') from error

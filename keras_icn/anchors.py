"""Strong models of another kind that the studies compare with, trained and
scored on the same examples: for tables, gradient-boosted trees.

A neural network on a few hundred rows of measurements is not the obvious
choice; the anchor says what a tuned off-the-shelf model reaches there.
"""

import numpy as np

# The grid searched by 5-fold cross-validation on the training examples.
GRID = {"learning_rate": [0.03, 0.1], "max_leaf_nodes": [7, 31], "max_iter": [100, 300]}


def gradient_boosting_error(x_train, y_train, x_test, y_test, seed=0):
    """Test error of scikit-learn's HistGradientBoostingClassifier, its settings
    chosen from `GRID` by stratified 5-fold cross-validation on the training
    examples (fewer folds where a class has fewer than 5)."""
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.model_selection import GridSearchCV, StratifiedKFold
    except ImportError as error:
        raise ImportError('The gradient-boosting anchor needs scikit-learn: pip install -e '
                          '".[series]"') from error
    x_train = np.reshape(x_train, (len(x_train), -1))
    folds = int(min(5, np.bincount(y_train).min()))
    search = GridSearchCV(HistGradientBoostingClassifier(random_state=seed), GRID,
                          cv=StratifiedKFold(max(folds, 2), shuffle=True, random_state=seed))
    search.fit(x_train, y_train)
    predicted = search.predict(np.reshape(x_test, (len(x_test), -1)))
    return float(np.mean(predicted != y_test)), search.best_params_

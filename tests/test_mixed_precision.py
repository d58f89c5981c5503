"""Mixed precision: a float16/bfloat16 network, float32 Langevin updates, scores and pool."""

import keras
import numpy as np
import pytest

from conftest import make_dataset, make_model


@pytest.fixture
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
def test_training_and_synthesis_stay_finite_and_correct(policy):
    model = make_model()  # built under the policy
    compute_dtype = policy.removeprefix("mixed_")
    assert model.network.layers[0].compute_dtype == compute_dtype
    assert model.network.layers[0].kernel.dtype == "float32"
    if policy == "mixed_float16":  # Keras scales the loss; our train_step must too
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    history = model.fit(make_dataset(), epochs=3, shuffle=False, verbose=0)
    assert all(np.isfinite(v).all() for v in history.history.values())
    assert history.history["accuracy"][-1] == 1.0
    assert model.pool.images.dtype == "float32" and int(model.pool.count.numpy()) > 0
    assert np.isfinite(model.pool.images.numpy()).all()

    labels = np.array([0, 1] * 4)
    samples = model.synthesize(labels, seed=0)
    assert samples.dtype == "float32" and np.isfinite(samples.numpy()).all()
    logits = model(samples)
    assert logits.dtype == "float32"
    np.testing.assert_array_equal(np.argmax(logits, -1), labels)

    # The same weights in float32 make nearly the same samples: the chains follow
    # the gradient, which lower precision only rounds.
    keras.mixed_precision.set_global_policy("float32")
    exact = make_model()
    exact.set_weights(model.get_weights())
    difference = np.abs(exact.synthesize(labels, seed=0).numpy() - samples.numpy())
    print(policy, difference.mean(), difference.max())
    assert difference.mean() < 0.02

import numpy as np
import tensorflow as tf

from keras_icn import sampler
from keras_icn.prior import PixelPrior
from conftest import IMAGE_SHAPE, make_images


def run(model, start, labels, num_steps, seed=(1, 2), **overrides):
    settings = dict(step_size=model.step_size, noise_stddev=model.noise_stddev,
                    value_range=model.value_range, stop_probability=None)
    settings.update(overrides)
    return sampler.langevin_dynamics(model.network, tf.convert_to_tensor(start),
                                     tf.convert_to_tensor(labels),
                                     num_steps, tf.convert_to_tensor(seed), **settings)


def test_zero_noise_langevin_raises_the_class_logit(trained_model):
    start, _ = make_images(32, seed=5)
    labels = np.arange(32, dtype="int32") % 2
    before = sampler.class_logits(trained_model.network(start), labels)
    samples = run(trained_model, start, labels, 10, noise_stddev=0.0, step_size=0.05)
    after = sampler.class_logits(trained_model.network(samples), labels)
    assert float(np.mean(after)) > float(np.mean(before)) + 0.1
    # Gradient ascent with no noise never lowers any sample's logit by much.
    assert np.all(after.numpy() >= before.numpy() - 1e-3)


def test_samples_stay_in_value_range(trained_model):
    start = np.random.default_rng(0).uniform(-1, 1, (16,) + IMAGE_SHAPE).astype("float32")
    start = np.clip(start, -0.5, 0.5)
    samples = run(trained_model, start, np.zeros(16, "int32"), 5, step_size=100.0,
                     noise_stddev=3.0, value_range=(-0.5, 0.5))
    assert samples.numpy().min() >= -0.5 and samples.numpy().max() <= 0.5
    assert samples.numpy().min() == -0.5 and samples.numpy().max() == 0.5  # it did clip


def test_same_seed_same_samples_other_seed_other_samples(trained_model):
    start, _ = make_images(8)
    labels = np.zeros(8, "int32")
    first = run(trained_model, start, labels, 4, seed=(3, 4))
    again = run(trained_model, start, labels, 4, seed=(3, 4))
    other = run(trained_model, start, labels, 4, seed=(5, 6))
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    assert not np.allclose(first.numpy(), other.numpy())


def test_stop_probability_freezes_samples_already_classified(trained_model):
    start, start_labels = make_images(16, seed=7)
    probability = sampler.target_probability(trained_model.network(start), start_labels).numpy()
    threshold = float(np.median(probability))
    samples = run(trained_model, start, start_labels, 5, stop_probability=threshold)
    moved = np.any(samples.numpy() != start, axis=(1, 2, 3))
    np.testing.assert_array_equal(moved, probability < threshold)


def test_loop_compiles_under_xla_and_matches_the_graph_loop(trained_model):
    # XLA draws other Gaussian numbers from the same stateless seed, so compare
    # the deterministic part of the dynamics: zero noise.
    start, _ = make_images(8)
    labels = np.ones(8, "int32")

    def chains(start, labels):
        return run(trained_model, start, labels, 6, noise_stddev=0.0, step_size=0.05)

    graph = tf.function(chains)(start, labels).numpy()
    xla = tf.function(chains, jit_compile=True)(start, labels).numpy()
    assert not np.allclose(graph, start)
    np.testing.assert_allclose(xla, graph, atol=1e-4)


def test_binary_scores_use_the_single_logit():
    logits = tf.constant([[2.0], [-1.0]])
    labels = tf.constant([0, 0])
    np.testing.assert_allclose(sampler.class_logits(logits, labels), [2.0, -1.0])
    np.testing.assert_array_equal(sampler.classified_as(logits, labels), [True, False])
    np.testing.assert_allclose(sampler.target_probability(logits, labels),
                               1 / (1 + np.exp([-2.0, 1.0])), rtol=1e-6)


def test_per_sample_seeds_make_each_sample_independent_of_its_batch(trained_model):
    start, _ = make_images(4)
    labels = np.array([0, 1, 0, 1], "int32")
    seeds = np.array([[7, 0], [8, 0], [9, 0], [10, 0]], "int64")
    together = run(trained_model, start, labels, 3, seed=seeds)
    alone = run(trained_model, start[2:3], labels[2:3], 3, seed=seeds[2:3])
    np.testing.assert_allclose(alone.numpy()[0], together.numpy()[2], atol=1e-6)
    assert not np.allclose(together.numpy()[0], together.numpy()[2])


def test_prior_metric_preconditions_the_step_by_p0s_covariance(trained_model):
    # One step without noise moves by (step_size / 2) C grad f_k, C the
    # covariance of p_0; with noise, per-sample seeds keep each sample
    # independent of its batch, as the serving signature needs.
    prior = PixelPrior(IMAGE_SHAPE, kind="pca", value_range=None)
    prior.adapt(make_images(256)[0])
    start, _ = make_images(4, seed=3)
    start = tf.constant(start)
    labels = tf.constant([0, 1, 0, 1], "int32")
    with tf.GradientTape() as tape:
        tape.watch(start)
        scores = sampler.class_logits(trained_model.network(start), labels)
    expected = start + 0.5 * 0.05 * prior.covariance_times(tape.gradient(scores, start))
    moved = run(trained_model, start, labels, 1, step_size=0.05, noise_stddev=0.0,
                value_range=None, metric=prior)
    np.testing.assert_allclose(moved.numpy(), expected.numpy(), atol=1e-6)
    plain = run(trained_model, start, labels, 1, step_size=0.05, noise_stddev=0.0,
                value_range=None)
    assert not np.allclose(moved.numpy(), plain.numpy(), atol=1e-4)
    seeds = np.array([[7, 0], [8, 0], [9, 0], [10, 0]], "int64")
    together = run(trained_model, start, labels, 3, seed=seeds, metric=prior)
    alone = run(trained_model, start[2:3], labels[2:3], 3, seed=seeds[2:3], metric=prior)
    np.testing.assert_allclose(alone.numpy()[0], together.numpy()[2], atol=1e-6)

"""IntrospectiveClassifier: a classifier trained by reclassification-by-synthesis.

Reference: Jin, Lazarow & Tu, "Introspective Classification with Convolutional
Nets", NeurIPS 2017.
"""

import random

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_icn import bounds, data, losses, open_set, randomness, replicas, sampler, whitening
from keras_icn.pool import PseudoNegativePool
from keras_icn.prior import PixelPrior

MODES = ("icn", "baseline")
SYNTHESIS = ("fresh", "persistent", "data", "mixed")
# The chain starts that move training images toward another class.
FROM_DATA = ("data", "mixed")
METRICS = ("pixel", "prior")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}. Received: {name}={value!r}")


def _check_positive(name, value, allow_zero=False):
    if not (value >= 0 if allow_zero else value > 0):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}. Received: {name}={value!r}")


def _check_standardization(standardization, input_shape):
    """`(mean, std)` as float32 arrays broadcastable to `input_shape`, std > 0."""
    try:
        mean, std = (np.asarray(v, np.float32) for v in standardization)
        np.broadcast_to(mean, input_shape), np.broadcast_to(std, input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"standardization must be (mean, std), arrays that broadcast to the "
                         f"input shape {input_shape}. Received: standardization="
                         f"{standardization!r}") from None
    if not (np.all(np.isfinite(mean)) and np.all(std > 0) and np.all(np.isfinite(std))):
        raise ValueError(f"standardization's std must be finite and > 0 and its mean finite. "
                         f"Received: standardization={standardization!r}")
    return mean, std


@keras.saving.register_keras_serializable(package="keras_icn")
class IntrospectiveClassifier(keras.Model):
    """One network that classifies and synthesizes.

    Wraps any `network` mapping inputs of a fixed shape (images `(batch, H, W,
    C)`, series `(batch, T, C)`, feature vectors `(batch, F)`, ...) in
    `value_range` to K logits f_1..f_K. Each training step synthesizes `synthesis_batch_size`
    pseudo-negatives by Langevin dynamics on the input (see `keras_icn.sampler`)
    from the step's training images (or from p_0, see `synthesis`),
    appends them to an on-device pool, and minimises cross-entropy on the
    positives plus `introspective_weight` times the logistic loss of each class
    against its pseudo-negatives (see `keras_icn.losses`), on the fresh samples
    and `pool_batch_size` entries replayed from the pool.

    Args:
        network: a `keras.Model` with a known input shape and `num_classes` outputs.
        num_classes: K. With 1 the model is the paper's binary case: one
            logit, positives (label 0) against pseudo-negatives.
        mode: `"icn"`, or `"baseline"`: plain cross-entropy training of the same
            network, with no synthesis.
        synthesis: where training chains start: `"fresh"` (from p_0, as in
            the paper), `"persistent"` (from pool entries, restarting from p_0
            with probability `reinit_probability`) or `"data"` (from the
            step's training images, each toward a class other than its own:
            contrastive-divergence-style pseudo-negatives near the data) or
            `"mixed"` (half of the chains each way, `"data"` and `"fresh"`:
            meant to teach rejection both near the data and far from it;
            docs/series-and-tables.md has how it did). Default: `"data"`, or
            `"fresh"` in the binary case, where there is no other class.
            `synthesize()` and the exported signature always start from p_0.
        prior: p_0, `"gaussian"` (per-feature moments of the positives, updated in
            every training step; `adapt()` sets them up front), `"pca"` (the
            same plus the top principal components of `adapt()`'s images; see
            `PixelPrior`) or `"uniform"`.
        value_range: `(low, high)` of the inputs, numbers or arrays per feature
            (or per channel), that samples are clipped to; None: unbounded
            (see `keras_icn.bounds`).
        standardization: None, or `(mean, std)` (arrays broadcastable to one
            input) in raw units: the model's inputs are `(raw - mean) / std`.
            `from_raw`/`to_raw` and the exported signatures use it, so clients
            send and receive raw values. Without it, an image model's raw
            values are pixels (0..255, mapped to `value_range`) and other
            models' raw values are their inputs.
        unknown_score: which score says "unknown" (see `keras_icn.open_set`):
            `"logsumexp"` (default), `"max_logit"` or `"max_softmax"`.
        unknown_threshold: inputs whose unknown score exceeds it are unknown
            (`predict_open_set`, the exported `classify`); None until
            `calibrate_unknown` sets it (then only non-finite inputs are).
        step_size: Langevin ε (the gradient step is ε/2).
        noise_stddev: Langevin noise σ.
        num_langevin_steps: T, steps per chain in training.
        synthesis_batch_size: new pseudo-negatives per training step.
        pool_capacity: pool entries kept on the device (a ring buffer).
        pool_batch_size: pool entries replayed per training step.
        reinit_probability: persistent mode: chance a chain restarts from p_0.
        introspective_weight: α, weight of the introspective loss.
        stop_probability: if set, a chain stops once q(k|x) reaches it.
        synthesis_steps: default Langevin steps of `synthesize()`; enough that
            the model classifies what it returns as the requested labels.
        synthesis_metric: the metric of `synthesize()`'s chains (and the
            exported signature's): `"pixel"` (plain Langevin steps, as in
            training) or `"prior"` (steps preconditioned by p_0's covariance,
            `keras_icn.sampler`: smoother samples; docs/cifar10.md has the
            measurements). Training chains are always `"pixel"`.
        introspection_warmup_steps: training steps of plain cross-entropy
            before synthesis begins (0: from the first step), e.g. to let
            BatchNorm's moving statistics, which the chains use, settle first.
            No chain runs and nothing enters the pool during the warm-up.
        label_smoothing: the training cross-entropy's targets put this much
            probability evenly on all classes (0: one-hot; the fast CIFAR
            recipe uses 0.2); evaluation's loss stays one-hot.
        test_time_flips: classify an image (evaluation, `predict`, the
            unknown score, the exported `classify`) by the mean of its logits
            and its left-right mirror image's; chains (training and
            `synthesize`) follow the network's own logits.
        seed: seed of the model's randomness (start points, noise, pool
            sampling). Training draws from (seed, step), so with a fixed seed a
            CPU run is reproducible, also across a resume from a checkpoint;
            `synthesize()` without a seed draws from a `SeedGenerator`.

    Example:
    ```python
    network = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])
    model = keras_icn.IntrospectiveClassifier(network, num_classes=10)
    model.compile(optimizer="adam")
    model.fit(train_ds, epochs=1)
    images = model.synthesize([0, 1, 2])
    ```

    Reference: Jin, Lazarow & Tu, "Introspective Classification with
    Convolutional Nets", NeurIPS 2017.
    """

    def __init__(
        self,
        network,
        num_classes,
        mode="icn",
        synthesis=None,
        prior="pca",
        value_range=(0.0, 1.0),
        step_size=0.5,
        noise_stddev=0.03,
        num_langevin_steps=5,
        synthesis_batch_size=16,
        pool_capacity=8192,
        pool_batch_size=32,
        reinit_probability=0.05,
        introspective_weight=0.1,
        stop_probability=None,
        synthesis_steps=20,
        synthesis_metric="pixel",
        introspection_warmup_steps=0,
        label_smoothing=0.0,
        test_time_flips=False,
        seed=None,
        standardization=None,
        unknown_score="logsumexp",
        unknown_threshold=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_choice("mode", mode, MODES)
        if synthesis is None:
            synthesis = "fresh" if num_classes == 1 else "data"
        _check_choice("synthesis", synthesis, SYNTHESIS)
        for name, value in (("num_classes", num_classes), ("step_size", step_size),
                            ("num_langevin_steps", num_langevin_steps),
                            ("synthesis_batch_size", synthesis_batch_size),
                            ("synthesis_steps", synthesis_steps)):
            _check_positive(name, value)
        for name, value in (("noise_stddev", noise_stddev), ("pool_batch_size", pool_batch_size),
                            ("introspective_weight", introspective_weight),
                            ("introspection_warmup_steps", introspection_warmup_steps)):
            _check_positive(name, value, allow_zero=True)
        if not 0.0 <= reinit_probability <= 1.0:
            raise ValueError(f"reinit_probability must be in [0, 1]. "
                             f"Received: reinit_probability={reinit_probability!r}")
        if stop_probability is not None and not 0.0 < stop_probability <= 1.0:
            raise ValueError(f"stop_probability must be None or in (0, 1]. "
                             f"Received: stop_probability={stop_probability!r}")
        if synthesis in FROM_DATA and num_classes == 1:
            raise ValueError(f'synthesis="{synthesis}" needs num_classes >= 2: its chains move '
                             "training images toward another class. Received: num_classes=1")
        input_shape = self._check_network(network, num_classes)
        value_range = bounds.normalize(value_range, input_shape)
        if standardization is not None:
            standardization = _check_standardization(standardization, input_shape)

        self.network = network
        self.num_classes = int(num_classes)
        self.mode = mode
        self.synthesis = synthesis
        self.value_range = value_range  # None, or (low, high): numbers or float32 arrays
        self.step_size = float(step_size)
        self.noise_stddev = float(noise_stddev)
        self.num_langevin_steps = int(num_langevin_steps)
        self.synthesis_batch_size = int(synthesis_batch_size)
        self.pool_capacity = int(pool_capacity)
        self.pool_batch_size = int(pool_batch_size)
        self.reinit_probability = float(reinit_probability)
        self.introspective_weight = float(introspective_weight)
        self.stop_probability = stop_probability
        self.synthesis_steps = int(synthesis_steps)
        self.synthesis_metric = synthesis_metric  # checked by its setter
        self.introspection_warmup_steps = int(introspection_warmup_steps)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1). Received: "
                             f"label_smoothing={label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        self.seed = seed
        self.input_shape = input_shape
        self.test_time_flips = bool(test_time_flips)
        if self.test_time_flips and len(input_shape) != 3:
            raise ValueError(f"test_time_flips mirrors images (H, W, C); this network takes "
                             f"inputs of shape {input_shape}. Use test_time_flips=False.")
        self.standardization = standardization
        self.unknown_score = open_set.check_score(unknown_score)
        self.unknown_threshold = None if unknown_threshold is None else float(unknown_threshold)

        self.prior = PixelPrior(input_shape, kind=prior, value_range=value_range, name="prior")
        self.pool = PseudoNegativePool(pool_capacity, input_shape, name="pool")
        if self.pool_capacity < self.synthesis_batch_size:
            raise ValueError(f"pool_capacity must be >= synthesis_batch_size="
                             f"{self.synthesis_batch_size}. Received: pool_capacity={pool_capacity}")
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")
        # Training randomness is a function of (training seed, step): a run that
        # resumes from a checkpoint draws exactly what the uninterrupted run drew.
        self._training_seed = int(seed) if seed is not None else random.randrange(2**31)

        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")
        self.introspective_loss_tracker = keras.metrics.Mean(name="introspective_loss")
        self.acceptance_tracker = keras.metrics.Mean(name="pseudo_negative_acceptance")
        self._synthesize_function = None
        self.built = True

    @staticmethod
    def _check_network(network, num_classes):
        if not isinstance(network, keras.Model):
            raise TypeError(f"network must be a keras.Model. Received: {type(network).__name__}")
        try:
            input_shape, output_shape = network.input_shape, network.output_shape
        except (AttributeError, ValueError):
            raise ValueError(
                f"network {network.name!r} has no known input shape: start it with "
                "keras.Input(shape=...), e.g. (H, W, C), (T, C) or (F,), or build it, before "
                "wrapping it."
            ) from None
        if not isinstance(input_shape, tuple) or len(input_shape) < 2 or None in input_shape[1:]:
            raise ValueError(f"network must take one batch of inputs of a fixed shape, e.g. "
                             f"(batch, H, W, C), (batch, T, C) or (batch, F). "
                             f"Received: input_shape={input_shape}")
        if not isinstance(output_shape, tuple) or output_shape[1:] != (num_classes,):
            raise ValueError(f"network must output num_classes={num_classes} logits per input, "
                             f"shape (batch, {num_classes}). Received: output_shape={output_shape}")
        return tuple(input_shape[1:])

    # Keras plumbing -------------------------------------------------------------

    @property
    def metrics(self):
        trackers = [self.loss_tracker, self.accuracy_tracker]
        if self.mode == "icn":
            trackers += [self.introspective_loss_tracker, self.acceptance_tracker]
        return trackers

    def compile(self, optimizer="adam", **kwargs):
        """Configures training; the loss is the model's own, so pass no `loss`."""
        if kwargs.get("loss") is not None:
            raise ValueError("IntrospectiveClassifier computes its own loss: call compile() "
                             f"without loss. Received: loss={kwargs['loss']!r}")
        replicas.check_strategy(kwargs.get("steps_per_execution", 1), {
            "synthesis_batch_size": self.synthesis_batch_size if self.mode == "icn" else 0,
            "pool_batch_size": self.pool_batch_size if self.mode == "icn" else 0})
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        """Recompiles on `load_model`, restoring the optimizer and its state."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        self.optimizer.build(self.trainable_variables)

    def call(self, images, training=False):
        """Logits `(batch, K)` of inputs in the model's units (in `value_range`);
        with `test_time_flips`, in inference the mean of an image's logits and
        its mirror image's."""
        logits = sampler.logits_of(self.network, images, training)
        if self.test_time_flips and not training:
            logits = 0.5 * (logits + sampler.logits_of(self.network, ops.flip(images, axis=2)))
        return logits

    @property
    def image_shape(self):
        """The old name of `input_shape`."""
        return self.input_shape

    @property
    def takes_pixels(self):
        """Whether raw values are pixels (0..255): an image model without
        `standardization`."""
        return len(self.input_shape) == 3 and self.standardization is None

    def from_raw(self, values):
        """Raw values (see `standardization`) to the model's units, float32."""
        if self.standardization is not None:
            mean, std = self.standardization
            return (tf.cast(values, tf.float32) - mean) / std
        if self.takes_pixels:
            return data.scale_images(values, self.value_range)
        return tf.cast(values, tf.float32)

    def to_raw(self, values):
        """The model's units to raw values, float32 (inverse of `from_raw`)."""
        if self.standardization is not None:
            mean, std = self.standardization
            return tf.cast(values, tf.float32) * std + mean
        if self.takes_pixels:
            return data.unscale_images(values, self.value_range)
        return tf.cast(values, tf.float32)

    def adapt(self, data, max_batches=None):
        """Fits p_0's per-pixel moments to `data` (see `PixelPrior.adapt`), and
        the network's `PatchWhitening` layers (`keras_icn.whitening`), if any,
        to the first `whitening.EXAMPLES` of the same data."""
        self.prior.adapt(data, max_batches=max_batches)
        whitening.adapt_network(self.network, data, max_batches)

    # Saying "unknown" -------------------------------------------------------------

    def open_set_outputs(self, inputs):
        """Traceable: `{logits, probabilities, classes, unknown_score,
        is_unknown}` of a batch in the model's units (`keras_icn.open_set`).
        Rows with a non-finite value are unknown, class -1."""
        finite = open_set.finite_rows(inputs)
        inputs = tf.where(sampler.per_sample(finite, inputs), inputs, tf.zeros_like(inputs))
        logits = self(inputs)
        if self.num_classes == 1:  # binary: class 0 when accepted, else -1
            probabilities = tf.sigmoid(logits)
            classes = tf.where(logits[:, 0] > 0, 0, -1)
        else:
            probabilities = tf.nn.softmax(logits)
            classes = tf.argmax(logits, axis=-1)
        return {"logits": logits, "probabilities": probabilities,
                **open_set.decide(logits, tf.cast(classes, tf.int64), finite,
                                  self.unknown_threshold, self.unknown_score)}

    def predict_open_set(self, inputs, batch_size=256):
        """Class, unknown score and `is_unknown` of each input.

        Args:
            inputs: array `(N,) + input_shape` in the model's units (`from_raw`
                maps raw values).

        Returns:
            A dict of numpy arrays: `classes` (int64; -1 for non-finite
            inputs), `unknown_score` (float32, higher: less like any class),
            `is_unknown` (bool), `probabilities`.
        """
        inputs = np.asarray(inputs, np.float32)
        if inputs.shape[1:] != self.input_shape:
            raise ValueError(f"inputs must have shape (N,) + {self.input_shape}. "
                             f"Received: {inputs.shape}")
        parts = [{k: v.numpy() for k, v in self.open_set_outputs(
                  tf.constant(inputs[i:i + batch_size])).items() if k != "logits"}
                 for i in range(0, max(len(inputs), 1), batch_size)]  # one part if empty
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    def calibrate_unknown(self, inputs, true_positive_rate=0.95, batch_size=256):
        """Sets `unknown_threshold` so that `true_positive_rate` of `inputs`
        (held-out inputs of the known classes, in the model's units) are kept;
        returns it."""
        scores = self.predict_open_set(inputs, batch_size)["unknown_score"]
        self.unknown_threshold = open_set.calibrate(scores, true_positive_rate)
        return self.unknown_threshold

    # Synthesis -------------------------------------------------------------------

    @property
    def synthesis_metric(self):
        """`"pixel"` or `"prior"`: see the class docstring. Settable, e.g. to
        export a trained model with the other (training does not depend on it)."""
        return self._synthesis_metric

    @synthesis_metric.setter
    def synthesis_metric(self, value):
        _check_choice("synthesis_metric", value, METRICS)
        self._synthesis_metric = value
        self._synthesize_function = None  # traced with the old metric

    def run_chains(self, start, labels, num_steps, seed, metric=None):
        """Langevin chains from `start` toward `labels`, the one synthesis code
        path; `metric`: None, or a `PixelPrior` whose covariance preconditions
        the steps (`keras_icn.sampler`)."""
        return sampler.langevin_dynamics(
            self.network, start, labels, num_steps, seed, self.step_size, self.noise_stddev,
            self.value_range, self.stop_probability, metric)

    def synthesize_from_prior(self, labels, num_steps, seed, for_training=False):
        """Start points from p_0, then `run_chains`, in `synthesis_metric`
        unless `for_training` (training chains are always `"pixel"`); traceable,
        returns the samples.

        `seed`: `(2,)` for the batch, or `(batch, 2)` so each sample depends on
        its own seed only (the serving signature).
        """
        start_seed, chain_seed = randomness.split(seed, 2)
        start = self.prior.sample(tf.shape(labels)[0], start_seed)
        metric = self.prior if self.synthesis_metric == "prior" and not for_training else None
        return self.run_chains(start, labels, num_steps, chain_seed, metric)

    def synthesize(self, labels, num_steps=None, seed=None):
        """Synthesizes one input per requested label.

        Args:
            labels: int class labels, shape `(batch,)`, in `[0, num_classes)`.
            num_steps: Langevin steps; default `synthesis_steps`.
            seed: int for a reproducible result; default draws from the model's
                random stream.

        Returns:
            float32 tensor `(batch,) + input_shape` in the model's units (in
            `value_range`); `to_raw` maps it to raw values.
        """
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise ValueError(f"labels must be a 1-D array of ints. Received: {labels!r}")
        if labels.size and not (0 <= labels.min() and labels.max() < self.num_classes):
            raise ValueError(f"labels must be in [0, {self.num_classes}). Received: {labels}")
        num_steps = self.synthesis_steps if num_steps is None else int(num_steps)
        seed = self.seed_generator.next() if seed is None else tf.constant([seed, 0])
        if self._synthesize_function is None:
            self._synthesize_function = tf.function(
                lambda labels, num_steps, seed: self.synthesize_from_prior(labels, num_steps, seed),
                reduce_retracing=True, autograph=False,
            )
        return self._synthesize_function(
            tf.constant(labels, "int32"), tf.constant(num_steps, "int32"), tf.cast(seed, "int64")
        )

    def _pseudo_negatives(self, seed, images, image_labels, batch_size):
        """Synthesizes `batch_size` pseudo-negatives: `(samples, labels)`."""
        label_seed, start_seed, reinit_seed, chain_seed = randomness.split(seed, 4)
        if self.synthesis in FROM_DATA:
            # The first images of the (shuffled) batch, each toward another class;
            # "mixed": half of them, the rest from p_0 toward random classes.
            count = batch_size if self.synthesis == "data" else (batch_size + 1) // 2
            rows = tf.range(count) % tf.shape(images)[0]
            shift = tf.random.stateless_uniform(
                (count,), label_seed, minval=1, maxval=self.num_classes, dtype="int32")
            labels = (ops.cast(ops.take(image_labels, rows), "int32") + shift) % self.num_classes
            start = ops.take(images, rows, axis=0)
            if count < batch_size:
                labels = ops.concatenate([labels, tf.random.stateless_uniform(
                    (batch_size - count,), reinit_seed, minval=0, maxval=self.num_classes,
                    dtype="int32")], axis=0)
                start = ops.concatenate(
                    [start, self.prior.sample(batch_size - count, start_seed)], axis=0)
            return self.run_chains(start, labels, self.num_langevin_steps, chain_seed), labels
        labels = tf.random.stateless_uniform(
            (batch_size,), label_seed, minval=0, maxval=self.num_classes, dtype="int32"
        )
        if self.synthesis == "fresh":
            return self.synthesize_from_prior(labels, self.num_langevin_steps, chain_seed,
                                              for_training=True), labels
        # Persistent: continue chains from the pool, restarting some from p_0.
        pool_images, pool_labels = self.pool.sample(batch_size, start_seed)
        restart = ops.logical_or(
            tf.random.stateless_uniform((batch_size,), reinit_seed) < self.reinit_probability,
            self.pool.size == 0,
        )
        start = ops.where(sampler.per_sample(restart, pool_images),
                          self.prior.sample(batch_size, start_seed), pool_images)
        labels = ops.where(restart, labels, pool_labels)
        return self.run_chains(start, labels, self.num_langevin_steps, chain_seed), labels

    def _replayed(self, seed, fresh, fresh_labels, batch_size):
        """`batch_size` earlier pseudo-negatives from the pool, drawn before this
        step's are added; until the pool holds any, this step's stand in."""
        images, labels = self.pool.sample(batch_size, seed)
        stand_in = tf.range(batch_size) % tf.shape(fresh)[0]
        empty = self.pool.size == 0
        return (ops.where(empty, ops.take(fresh, stand_in, axis=0), images),
                ops.where(empty, ops.take(fresh_labels, stand_in, axis=0), labels))

    # Training --------------------------------------------------------------------

    def _unpack(self, data):
        images, labels = data[0], data[1]
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        checks = [
            tf.debugging.assert_greater_equal(labels, 0, message="labels must be >= 0"),
            tf.debugging.assert_less(
                labels, max(self.num_classes, 1),
                message=f"labels must be < num_classes={self.num_classes}",
            ),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(images), tf.identity(labels)

    def _after_warmup(self, step, function, skipped):
        """`function()` once the warm-up is over, else `skipped()` (in-graph)."""
        if not self.introspection_warmup_steps:
            return function()
        return tf.cond(step >= self.introspection_warmup_steps, function, skipped)

    def train_step(self, data):
        # Under a tf.distribute strategy this runs once per replica, on the
        # replica's share of the batch, and makes its share of the pseudo-negatives
        # (see keras_icn.replicas); without one the shares are the whole.
        images, labels = self._unpack(data)
        self.prior.update(replicas.gather(images))  # the same update on every replica
        if self.mode == "icn":
            num_fresh = replicas.share("synthesis_batch_size", self.synthesis_batch_size)
            num_replayed = replicas.share("pool_batch_size", self.pool_batch_size)
            step = tf.cast(self.optimizer.iterations, "int64")  # read now, before the update
            synthesis_seed, replay_seed = randomness.split(replicas.fold_in_replica(
                tf.stack([tf.constant(self._training_seed, tf.int64), step])), 2)
            # (num_fresh, H, W, C) and labels; during the warm-up positives stand
            # in (so BatchNorm's batch statistics stay those of real images), and
            # the introspective term below has weight 0.
            rows = tf.range(num_fresh) % tf.shape(images)[0]
            fresh, fresh_labels = self._after_warmup(
                step, lambda: self._pseudo_negatives(synthesis_seed, images, labels, num_fresh),
                lambda: (ops.take(images, rows, axis=0), ops.take(labels, rows)))
            replayed, replayed_labels = self._replayed(replay_seed, fresh, fresh_labels,
                                                       num_replayed)
            # (num_fresh + num_replayed, H, W, C), fresh first.
            negatives = ops.concatenate([fresh, replayed], axis=0)
            negative_labels = ops.concatenate([fresh_labels, replayed_labels], axis=0)
            introspecting = self._after_warmup(step, lambda: tf.constant(1.0),
                                               lambda: tf.constant(0.0))

        with tf.GradientTape() as tape:
            if self.mode == "icn":
                # One training-mode pass over positives and pseudo-negatives (constants
                # here), so BatchNorm normalizes both with the same batch statistics.
                # Pseudo-negatives through inference mode instead would let the
                # introspective gradient lower f_k by shifting activations that batch
                # statistics cancel but the moving ones do not: it collapses the
                # inference-mode accuracy of a ResNet (docs/cifar10.md).
                both = sampler.logits_of(self.network, ops.concatenate([images, negatives], axis=0),
                                         training=True)
                logits = both[:tf.shape(images)[0]]
                # Static (num_fresh + num_replayed, K), also where the positives'
                # batch size is not (MultiWorkerMirroredStrategy rebatches).
                negative_logits = ops.reshape(both[tf.shape(images)[0]:],
                                              negatives.shape[:1] + both.shape[1:])
            else:
                logits = sampler.logits_of(self.network, images, training=True)
            loss = losses.classification_loss(logits, labels, self.label_smoothing)
            if self.mode == "icn":
                introspective = losses.introspective_loss(logits, labels, negative_logits,
                                                          negative_labels)
                loss = loss + (self.introspective_weight * introspecting) * introspective
            if self.network.losses:
                loss = loss + ops.sum(self.network.losses)
            # optimizer.apply sums the replicas' gradients: scaling each replica's
            # mean loss by 1/replicas gives the gradient of the global batch's mean.
            # Under mixed_float16, compile() made the optimizer a LossScaleOptimizer.
            scaled_loss = self.optimizer.scale_loss(loss / replicas.count())
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        if all(gradient is None for gradient in gradients):
            # Nothing to learn: a one-logit baseline has no loss without pseudo-negatives
            # (losses.classification_loss). Zero steps keep the optimizer's step count,
            # which schedules and resuming read, so the run stays the untrained network.
            gradients = [ops.zeros_like(variable) for variable in self.trainable_variables]
        self.optimizer.apply(gradients, self.trainable_variables)
        if self.mode == "icn":
            # The tape's pass already has the fresh samples' logits, from before the update.
            fresh_logits = negative_logits[:num_fresh]
            self.acceptance_tracker.update_state(
                ops.cast(sampler.classified_as(fresh_logits, fresh_labels), "float32"),
                sample_weight=ops.full((num_fresh,), introspecting))
            # Every replica adds every replica's samples (in replica order): the
            # pool's copies stay equal, and each sample is one entry.
            self._after_warmup(step, lambda: self.pool.add(
                replicas.gather(fresh), replicas.gather(fresh_labels),
                ops.full((self.synthesis_batch_size,), step),
                replicas.gather(sampler.target_probability(fresh_logits, fresh_labels))),
                lambda: tf.constant(False))

        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(
            ops.cast(sampler.classified_as(logits, labels), "float32"))
        logs = {}
        if self.mode == "icn":
            self.introspective_loss_tracker.update_state(introspective, sample_weight=introspecting)
            logs["pool_size"] = self.pool.size
        return self._logs({**{m.name: m.result() for m in self.metrics}, **logs})

    def test_step(self, data):
        images, labels = self._unpack(data)
        # (batch,) sample weights, if the data has them: 0 for the rows that
        # `keras_icn.data.full_batches` fills a short batch with.
        weights = data[2] if len(data) > 2 else None
        logits = self(images)
        per_example = losses.per_example_loss(logits, labels)
        correct = ops.cast(sampler.classified_as(logits, labels), "float32")
        if replicas.count() == 1:
            # Means over examples (not over batches): a short batch weighs what
            # its examples weigh.
            self.loss_tracker.update_state(per_example, sample_weight=weights)
            self.accuracy_tracker.update_state(correct, sample_weight=weights)
        else:
            # Keras reports evaluate's logs averaged over the replicas (an ICN
            # model's metrics are more than its logs), and the replicas' shares of
            # a batch can count different numbers of examples (weight 0 for filling):
            # every replica's trackers take every replica's sums, so each
            # result, and their average, is the mean over all examples.
            weights = ops.ones_like(correct) if weights is None else ops.cast(weights, "float32")
            loss_sum, correct_sum, count = replicas.sum_over_replicas(
                [ops.sum(per_example * weights), ops.sum(correct * weights), ops.sum(weights)])
            safe = ops.maximum(count, 1e-12)
            self.loss_tracker.update_state(loss_sum / safe, sample_weight=count)
            self.accuracy_tracker.update_state(correct_sum / safe, sample_weight=count)
        return self._logs({"loss": self.loss_tracker.result(),
                           "accuracy": self.accuracy_tracker.result()})

    # Keras 3.15 under MultiWorkerMirroredStrategy ----------------------------------
    # Keras fails there as shipped (keras-team/keras#20585, tensorflow/tensorflow#72388).
    # Both workarounds are here and nowhere else; tests/test_distribute.py checks the
    # Keras internals they rely on, so a Keras upgrade that changes them fails a test.

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras' trainer builds a model from its first batch, reduced across
        replicas: under MultiWorkerMirroredStrategy that reduction fails ("Attempt
        to convert a value (PerReplica...)"). This model's layers are built when
        it is constructed, so only the optimizer is left to build, in the scope."""
        if all(layer.built for layer in self._flatten_layers()):
            if self.optimizer is not None and not self.optimizer.built:
                with self.distribute_strategy.scope():
                    self.optimizer.build(self.trainable_variables)
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    @staticmethod
    def _logs(logs):
        """Keras reduces every log along axis 0 across workers, which fails for a
        scalar ("Invalid reduction dimension 0"): there, logs are shaped `(1,)`."""
        if not replicas.multi_worker():
            return logs
        return {name: ops.reshape(value, (1,)) for name, value in logs.items()}

    # Serialization -----------------------------------------------------------------

    def get_config(self):
        return {
            **super().get_config(),
            "network": keras.saving.serialize_keras_object(self.network),
            "num_classes": self.num_classes,
            "mode": self.mode,
            "synthesis": self.synthesis,
            "prior": self.prior.kind,
            "value_range": bounds.to_config(self.value_range),
            "step_size": self.step_size,
            "noise_stddev": self.noise_stddev,
            "num_langevin_steps": self.num_langevin_steps,
            "synthesis_batch_size": self.synthesis_batch_size,
            "pool_capacity": self.pool_capacity,
            "pool_batch_size": self.pool_batch_size,
            "reinit_probability": self.reinit_probability,
            "introspective_weight": self.introspective_weight,
            "stop_probability": self.stop_probability,
            "synthesis_steps": self.synthesis_steps,
            "synthesis_metric": self.synthesis_metric,
            "introspection_warmup_steps": self.introspection_warmup_steps,
            "label_smoothing": self.label_smoothing,
            "test_time_flips": self.test_time_flips,
            "seed": self.seed,
            "standardization": None if self.standardization is None else
            [np.asarray(v).tolist() for v in self.standardization],
            "unknown_score": self.unknown_score,
            "unknown_threshold": self.unknown_threshold,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)

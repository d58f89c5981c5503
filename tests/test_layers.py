"""keras_icn.layers: Keras' results, with the cheaper gradients really taken."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_icn import layers


@pytest.fixture(autouse=True)
def without_onednn(monkeypatch):
    """The layers' own gradients, as without TensorFlow's oneDNN operations, also
    where the tests run with them on (TF_ENABLE_ONEDNN_OPTS=1)."""
    monkeypatch.setattr(layers, "ONEDNN", False)


def differentiate(layer, images):
    """The layer's output (as float32) and the gradients of a nonlinear function
    of it with respect to the images and the weights."""
    with tf.GradientTape() as tape:
        tape.watch(images)
        outputs = tf.cast(layer(images), "float32")
        score = tf.reduce_sum(outputs * tf.cos(outputs))
    return [outputs] + tape.gradient(score, [images] + layer.trainable_weights)


def gradients(layer, images):
    """`differentiate`'s tensors as arrays, and the op types of the gradient graph."""
    function = tf.function(lambda images: differentiate(layer, images))
    graph = function.get_concrete_function(images).graph
    op_types = {op.type for op in graph.get_operations()}
    for function_def in graph.as_graph_def().library.function:  # custom gradients live here
        op_types |= {node.op for node in function_def.node_def}
    return [t.numpy() for t in function(images)], op_types


def twins(ours, reference, shape):
    ours.build(shape)
    reference.build(shape)
    reference.set_weights(ours.get_weights())
    return ours, reference


@pytest.mark.parametrize("channels,kernel_size,padding", [
    (layers.MIN_INPUT_CHANNELS, 5, "same"), (layers.MIN_INPUT_CHANNELS, 4, "same"),
    (layers.MIN_INPUT_CHANNELS, 3, "valid"), (layers.MIN_INPUT_CHANNELS, 4, "valid"),
    (layers.MIN_INPUT_CHANNELS, 6, "valid"), (1, 5, "same"), (3, 3, "valid")])
def test_conv2d_equals_keras_with_forward_convolutions_as_gradients(channels, kernel_size,
                                                                     padding):
    images = tf.random.stateless_normal((3, 9, 10, channels), [0, 1])
    ours, reference = twins(layers.Conv2D(6, kernel_size, padding=padding, activation="relu"),
                            keras.layers.Conv2D(6, kernel_size, padding=padding,
                                                activation="relu"), images.shape)
    (expected, expected_types), (got, got_types) = (gradients(reference, images),
                                                    gradients(ours, images))
    for e, g in zip(expected, got):  # outputs, image, kernel and bias gradients
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    assert {"Conv2DBackpropInput", "Conv2DBackpropFilter"} <= expected_types
    # The rule: image layers keep TensorFlow's input gradient; kernels of 5x5 and more,
    # and image layers, get the forward-convolution kernel gradient.
    thin = channels < layers.MIN_INPUT_CHANNELS
    wide = kernel_size**2 >= layers.MIN_KERNEL_AREA
    assert ("Conv2DBackpropInput" in got_types) == thin
    assert ("Conv2DBackpropFilter" in got_types) == (not (thin or wide))


@pytest.mark.parametrize("strides,dilation_rate", [(2, 1), (1, 2)])
def test_conv2d_is_keras_own_for_strides_and_dilations(strides, dilation_rate):
    images = tf.random.stateless_normal((2, 8, 8, 16), [0, 2])
    ours, reference = twins(
        layers.Conv2D(4, 3, strides=strides, dilation_rate=dilation_rate, padding="same"),
        keras.layers.Conv2D(4, 3, strides=strides, dilation_rate=dilation_rate, padding="same"),
        images.shape)
    (expected, _), (got, got_types) = gradients(reference, images), gradients(ours, images)
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g, e)
    assert "Conv2DBackpropInput" in got_types


@pytest.mark.parametrize("size", [(8, 8), (9, 11)])  # 9x11: valid padding drops a row and column
def test_max_pooling_equals_keras_without_ties(size):
    images = tf.random.stateless_normal((3,) + size + (5,), [0, 3])  # continuous: no ties
    ours, reference = twins(layers.MaxPooling2D(2), keras.layers.MaxPooling2D(2),
                            images.shape)
    (expected, expected_types), (got, got_types) = (gradients(reference, images),
                                                    gradients(ours, images))
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g, e)
    assert "MaxPoolGrad" in expected_types and "MaxPoolGrad" not in got_types


def test_max_pooling_gives_a_tied_maximum_to_its_first_position_as_keras():
    # Windows with ties (ReLU zeros, saturated pixels), 3x3 windows, a dropped column.
    images = tf.constant(np.random.default_rng(0).integers(0, 3, (2, 6, 7, 3)), tf.float32)
    for pool_size in (2, 3):
        ours, reference = twins(layers.MaxPooling2D(pool_size),
                                keras.layers.MaxPooling2D(pool_size), images.shape)
        (expected, _), (got, _) = gradients(reference, images), gradients(ours, images)
        for e, g in zip(expected, got):
            np.testing.assert_array_equal(g, e)
    # By hand: one 2x2 window whose maximum 1 is in three places.
    images = tf.constant([[1.0, 1.0], [0.0, 1.0]])[None, :, :, None]
    with tf.GradientTape() as tape:
        tape.watch(images)
        score = 3.0 * layers.MaxPooling2D(2)(images)
    np.testing.assert_array_equal(tape.gradient(score, images)[0, :, :, 0],
                                  [[3.0, 0.0], [0.0, 0.0]])


def test_layers_round_trip_through_a_keras_file(tmp_path):
    inputs = keras.Input((8, 8, 8))
    outputs = layers.MaxPooling2D(2)(layers.Conv2D(8, 3, padding="same")(inputs))
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert [type(layer) for layer in loaded.layers[1:]] == [layers.Conv2D, layers.MaxPooling2D]
    images = np.random.default_rng(0).normal(size=(2, 8, 8, 8)).astype("float32")
    np.testing.assert_array_equal(loaded(images), model(images))


@pytest.mark.parametrize("onednn", [False, True])  # with oneDNN: the depthwise input gradient
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_layers_compile_with_xla_and_run_in_mixed_precision(monkeypatch, policy, onednn):
    monkeypatch.setattr(layers, "ONEDNN", onednn)
    keras.config.set_dtype_policy(policy)
    try:
        images = tf.random.stateless_normal((2, 8, 8, layers.MIN_INPUT_CHANNELS), [0, 4])
        thin_images = images[..., :1]  # an image layer
        cases = [(layers.Conv2D(4, 3, padding="same"), keras.layers.Conv2D(4, 3, padding="same"),
                  images),
                 (layers.Conv2D(4, 5, padding="same"), keras.layers.Conv2D(4, 5, padding="same"),
                  images),
                 (layers.Conv2D(4, 5, padding="same"), keras.layers.Conv2D(4, 5, padding="same"),
                  thin_images),
                 (layers.MaxPooling2D(2), keras.layers.MaxPooling2D(2), images)]
        for ours, reference, inputs in cases:
            ours, reference = twins(ours, reference, inputs.shape)
            expected = differentiate(reference, inputs)
            got = tf.function(lambda inputs, layer=ours: differentiate(layer, inputs),
                              jit_compile=True)(inputs)
            # bfloat16 keeps 8 bits: compare at 5% of each tensor's scale.
            tolerance = 1e-5 if policy == "float32" else 5e-2
            for e, g in zip(expected, got):
                assert g.dtype == e.dtype
                e, g = np.asarray(e, "float32"), np.asarray(g, "float32")
                assert np.all(np.isfinite(g))
                np.testing.assert_allclose(g, e, rtol=tolerance,
                                           atol=tolerance * np.abs(e).max())
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("kernel_size,padding", [(5, "same"), (4, "same"), (3, "valid")])
def test_image_layer_input_gradient_is_depthwise_with_tensorflow_onednn_operations(
        monkeypatch, kernel_size, padding):
    monkeypatch.setattr(layers, "ONEDNN", True)
    images = tf.random.stateless_normal((3, 9, 10, 1), [0, 6])
    ours, reference = twins(layers.Conv2D(6, kernel_size, padding=padding, activation="relu"),
                            keras.layers.Conv2D(6, kernel_size, padding=padding,
                                                activation="relu"), images.shape)
    (expected, _), (got, got_types) = gradients(reference, images), gradients(ours, images)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    assert "DepthwiseConv2dNative" in got_types and "Conv2DBackpropInput" not in got_types
    assert "Conv2DBackpropFilter" in got_types  # oneDNN's kernel gradient


def test_depthwise_input_gradient_sums_every_input_channels_shares():
    # The rule takes it for one input channel only; the computation holds for any.
    images = tf.random.stateless_normal((2, 7, 8, 3), [0, 7])
    kernel = tf.random.stateless_normal((3, 2, 3, 5), [0, 8])
    expected, got = [tf.function(lambda images, choice=choice: tf.gradients(
        tf.reduce_sum(tf.sin(layers._conv2d(images, kernel, "same", choice, False))),
        images)[0])(images) for choice in ("backprop", "depthwise")]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_layers_are_keras_own_with_tensorflow_onednn_operations(monkeypatch):
    monkeypatch.setattr(layers, "ONEDNN", True)
    images = tf.random.stateless_normal((2, 8, 8, layers.MIN_INPUT_CHANNELS), [0, 5])
    for ours, reference, kernel in [
            (layers.Conv2D(4, 5, padding="same"), keras.layers.Conv2D(4, 5, padding="same"),
             "Conv2DBackpropFilter"),
            (layers.MaxPooling2D(2), keras.layers.MaxPooling2D(2), "MaxPoolGrad")]:
        ours, reference = twins(ours, reference, images.shape)
        (expected, _), (got, got_types) = gradients(reference, images), gradients(ours, images)
        for e, g in zip(expected, got):
            np.testing.assert_array_equal(g, e)
        assert kernel in got_types


@pytest.mark.parametrize("shape", [(5, 6, 7, 4), (4, 9, 3), (6, 5)])  # images, series, tables
@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_batch_normalization_equals_keras_through_the_fused_kernel(shape, scale, training,
                                                                   jit_compile):
    images = tf.random.stateless_normal(shape, [0, 9]) * 3.0 + 1.0
    ours, reference = layers.BatchNormalization(momentum=0.4, scale=scale), \
        keras.layers.BatchNormalization(momentum=0.4, scale=scale)
    ours.build(shape)
    # Weights and moving statistics away from their initial values (variances positive).
    rng = np.random.default_rng(0)
    ours.set_weights([w + np.abs(rng.normal(size=w.shape)).astype("float32")
                      for w in ours.get_weights()])
    reference.build(shape)
    reference.set_weights(ours.get_weights())

    def run(layer):
        with tf.GradientTape() as tape:
            tape.watch(images)
            outputs = layer(images, training=training)
            score = tf.reduce_sum(outputs * tf.cos(outputs))
        return ([outputs] + tape.gradient(score, [images] + layer.trainable_weights)
                + [tf.convert_to_tensor(w) for w in layer.non_trainable_weights])

    function = tf.function(lambda: run(ours), jit_compile=jit_compile)
    if not jit_compile:
        graph = function.get_concrete_function().graph
        assert {"FusedBatchNormV3", "FusedBatchNormGradV3"} <= {
            op.type for op in graph.get_operations()}
    expected, got = run(reference), function()
    # outputs; image, (scale) and offset gradients; moving mean and variance (updated in training)
    assert len(got) == len(expected) == 5 + scale
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4 * np.abs(e).max())


def test_batch_normalization_is_keras_own_where_the_kernel_does_not_apply():
    images = tf.random.stateless_normal((4, 3, 6), [0, 10])
    for ours in (layers.BatchNormalization(axis=1), layers.BatchNormalization(synchronized=True)):
        ours.build(images.shape)
        graph = tf.function(lambda layer=ours: layer(images, training=True)
                            ).get_concrete_function().graph
        assert "FusedBatchNormV3" not in {op.type for op in graph.get_operations()}

"""Keras layers with cheaper input gradients, for networks that synthesize.

A Langevin step (`keras_icn.sampler`) differentiates a class logit with respect
to the input image, so every layer's input gradient is on the synthesis path,
step after step. Two of TensorFlow's CPU kernels for them are slow for what
they compute; these layers compute the same gradients with faster kernels and
are otherwise Keras' own (same arguments, weights and outputs). The built-in
networks (`keras_icn.networks`) use them; a custom backbone can too. Measured
on an AMD EPYC (Zen 3, AVX2), MNIST CNN, batch 128: a Langevin step takes
about 0.7 of its time with Keras' layers (README, "Performance").

- `Conv2D`: the input gradient of a stride-1 convolution is a convolution of
  the output gradient with the kernel flipped in space and its channel axes
  swapped. Computed as that forward convolution it takes half the time of
  oneDNN's backprop-input kernel (22 against 46 ms for the MNIST CNN's second
  convolution). Not for layers with fewer than `MIN_INPUT_CHANNELS` input
  channels (a network's image layer), where the forward convolution would have
  that few output channels and was slower than the kernel it replaces.
- `MaxPooling2D` with non-overlapping windows: the gradient goes to the first
  position of each window that equals its maximum (as TensorFlow's), found by
  comparing the window with its pooled value; TensorFlow's MaxPoolGrad
  recomputes the pooling and takes twice as long (17 against 8 ms for the
  MNIST CNN's first pooling).

Convolution gradients equal Keras' up to floating-point summation order;
pooling gradients equal them exactly. Both compile under XLA. GPUs were not
measured: there the replaced kernels may be fast already, and these cost at
most a kernel flip more.
"""

import keras
import tensorflow as tf

MIN_INPUT_CHANNELS = 8


def _conv2d(images, kernel, padding):
    """A stride-1 convolution, NHWC, whose input gradient is a forward convolution.

    Args:
        images: `(batch, H, W, C_in)`.
        kernel: `(kh, kw, C_in, C_out)` tensor.
        padding: `"same"` or `"valid"`, as for Keras.
    """
    kh, kw = kernel.shape[0], kernel.shape[1]
    # The padding before and after, per spatial axis (TensorFlow's SAME puts the odd one after).
    pads = [((k - 1) // 2, k - 1 - (k - 1) // 2) if padding == "same" else (0, 0)
            for k in (kh, kw)]
    padding_name = padding.upper()

    @tf.custom_gradient
    def convolve(images, kernel):
        outputs = tf.nn.conv2d(images, kernel, 1, padding_name)

        def gradient(output_gradient):
            flipped = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])
            full = [[0, 0]] + [[k - 1 - before, k - 1 - after]
                               for k, (before, after) in zip((kh, kw), pads)] + [[0, 0]]
            image_gradient = tf.nn.conv2d(output_gradient, flipped, 1, full)
            kernel_gradient = tf.raw_ops.Conv2DBackpropFilter(
                input=images, filter_sizes=tf.shape(kernel), out_backprop=output_gradient,
                strides=[1, 1, 1, 1], padding=padding_name)
            return image_gradient, kernel_gradient

        return outputs, gradient

    return convolve(images, kernel)


def _max_pool2d(images, pool_size):
    """Max pooling over non-overlapping `pool_size` windows (valid padding), NHWC,
    with a compare-and-select gradient."""
    ph, pw = pool_size
    _, height, width, channels = images.shape
    rows, columns = height // ph, width // pw

    @tf.custom_gradient
    def pool(images):
        outputs = tf.nn.max_pool2d(images, pool_size, pool_size, "VALID")

        def gradient(output_gradient):
            batch = tf.shape(images)[0]
            windows = tf.reshape(images[:, :rows * ph, :columns * pw],
                                 [batch, rows, ph, columns, pw, channels])
            shape = [batch, rows, 1, columns, 1, channels]
            is_max = tf.equal(windows, tf.reshape(outputs, shape))
            # The first maximum of each window in row-major order, as TensorFlow's
            # MaxPoolGrad: a position takes the gradient if it is a maximum and no
            # earlier one is.
            positions = [is_max[:, :, a:a + 1, :, b:b + 1] for a in range(ph) for b in range(pw)]
            first, seen = [positions[0]], positions[0]
            for here in positions[1:]:
                first.append(tf.logical_and(here, tf.logical_not(seen)))
                seen = tf.logical_or(seen, here)
            first = tf.concat([tf.concat(first[a * pw:(a + 1) * pw], axis=4)
                               for a in range(ph)], axis=2)
            image_gradient = tf.reshape(
                tf.where(first, tf.reshape(output_gradient, shape),
                         tf.zeros((), output_gradient.dtype)),
                [batch, rows * ph, columns * pw, channels])
            # Rows and columns valid padding leaves out get no gradient.
            return tf.pad(image_gradient, [[0, 0], [0, height - rows * ph],
                                           [0, width - columns * pw], [0, 0]])

        return outputs, gradient

    return pool(images)


@keras.saving.register_keras_serializable(package="keras_icn")
class Conv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` whose input gradient is computed as a forward convolution.

    Applies to stride 1, dilation 1, one group, `channels_last` and at least
    `MIN_INPUT_CHANNELS` input channels; any other configuration is Keras'
    convolution unchanged.
    """

    def _forward_input_gradient(self, inputs):
        return (tuple(self.strides) == (1, 1) and tuple(self.dilation_rate) == (1, 1)
                and self.groups == 1 and self.data_format == "channels_last"
                and inputs.shape[-1] is not None and inputs.shape[-1] >= MIN_INPUT_CHANNELS)

    def convolution_op(self, inputs, kernel):
        if not self._forward_input_gradient(inputs):
            return super().convolution_op(inputs, kernel)
        return _conv2d(inputs, tf.convert_to_tensor(kernel), self.padding)


@keras.saving.register_keras_serializable(package="keras_icn")
class MaxPooling2D(keras.layers.MaxPooling2D):
    """`keras.layers.MaxPooling2D` with a compare-and-select gradient.

    Applies to windows that do not overlap (`strides == pool_size`), valid
    padding, `channels_last` and known spatial sizes; any other configuration
    is Keras' pooling unchanged.
    """

    def call(self, inputs):
        if (tuple(self.strides) != tuple(self.pool_size) or self.padding != "valid"
                or self.data_format != "channels_last" or None in inputs.shape[1:]):
            return super().call(inputs)
        return _max_pool2d(inputs, tuple(self.pool_size))

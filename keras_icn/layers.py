"""Keras layers with cheaper gradients, for networks that synthesize.

A Langevin step (`keras_icn.sampler`) differentiates a class logit with respect
to the input image, so every layer's input gradient is on the synthesis path,
step after step; a training step also needs the kernel gradients. Some of
TensorFlow's CPU kernels for them are slow for what they compute; these layers
compute the same gradients with faster kernels and are otherwise Keras' own
(same arguments, weights and outputs). The built-in networks
(`keras_icn.networks`) use them; a custom backbone can too. Measured on an AMD
EPYC (Zen 3, AVX2), MNIST CNN, batch 128 (docs/performance.md):

- `Conv2D` (stride 1), input gradient: a convolution of the output gradient
  with the kernel flipped in space and its channel axes swapped. Computed as
  that forward convolution it takes half the time of TensorFlow's backprop-input
  kernel (22 against 46 ms for the MNIST CNN's second convolution). Not for
  layers with fewer than `MIN_INPUT_CHANNELS` input channels (a network's
  image layer), where the forward convolution would have that few output
  channels and was slower than the kernel it replaces.
- `Conv2D` (stride 1), kernel gradient: a forward convolution of the padded
  images, with their channels as the batch and the batch as channels, by the
  output gradient as the filter. For kernels of at least `MIN_KERNEL_AREA`
  positions (5x5) it took 0.6 to 0.75 of TensorFlow's backprop-filter kernel's
  time (30 against 42 ms for the MNIST CNN's second convolution), and for
  image layers (fewer than `MIN_INPUT_CHANNELS` input channels) about half
  (8 against 17 ms for its first); for 3x3 kernels on 16 to 64 channels (a
  ResNet's) it took 0.9 to 1.1 of the time, so those keep TensorFlow's.
- `MaxPooling2D` with non-overlapping windows: the gradient goes to the first
  position of each window that equals its maximum (as TensorFlow's), found by
  comparing the window with its pooled value; TensorFlow's MaxPoolGrad
  recomputes the pooling and takes twice as long (17 against 8 ms for the
  MNIST CNN's first pooling).

All of this is for TensorFlow's own kernels (Eigen's, with oneDNN's matrix
product inside). Where TensorFlow runs its oneDNN operations instead
(`TF_ENABLE_ONEDNN_OPTS=1` set before TensorFlow is imported, or the default on
some CPUs), their gradient kernels were as fast or faster on the same CPU
(pooling gradients in half the time, the image layer's kernel gradient in 0.4
of it), so these layers are then Keras' own (`ONEDNN`), but for one gradient:

- `Conv2D` with one input channel (a grey image layer), input gradient under
  oneDNN operations: a depthwise convolution of the output gradient with the
  flipped kernel, summed over the channels. oneDNN's backprop-input kernel for
  a single input channel took 14 ms for the MNIST CNN's first convolution, the
  depthwise convolution 6 (with TensorFlow's own kernels it was the other way
  round: 19 against 10 ms; with three input channels, 21 against 4 ms).

Convolution gradients equal Keras' up to floating-point summation order;
pooling gradients equal them exactly. All compile under XLA. GPUs were not
measured: there the replaced kernels may be fast already, and these cost at
most a kernel flip or a transpose more.
"""

import keras
import tensorflow as tf
from tensorflow.python.util import _pywrap_util_port

MIN_INPUT_CHANNELS = 8
MIN_KERNEL_AREA = 25
# Whether TensorFlow runs its oneDNN operations in this process (fixed when it is
# imported); if so, the layers below are Keras' own.
ONEDNN = _pywrap_util_port.IsMklEnabled()


def _conv2d(images, kernel, padding, input_gradient, forward_kernel_gradient):
    """A stride-1 convolution, NHWC, whose gradients can be forward convolutions.

    Args:
        images: `(batch, H, W, C_in)`.
        kernel: `(kh, kw, C_in, C_out)` tensor.
        padding: `"same"` or `"valid"`, as for Keras.
        input_gradient: how the input gradient is computed from the output
            gradient: `"backprop"` (TensorFlow's kernel), `"forward"` (a forward
            convolution with the kernel flipped in space and its channel axes
            swapped) or `"depthwise"` (a depthwise convolution with the flipped
            kernel, `C_in` outputs per channel, summed over the `C_out` channels).
        forward_kernel_gradient: the kernel gradient as a forward convolution
            of the padded images (their channels as the batch, the batch as
            channels) with the output gradient as the filter (else TensorFlow's).
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
            if input_gradient in ("forward", "depthwise"):
                # (kh, kw, C_out, C_in), and the padding that makes the correlation full.
                flipped = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])
                full = [[0, 0]] + [[k - 1 - before, k - 1 - after]
                                   for k, (before, after) in zip((kh, kw), pads)] + [[0, 0]]
            if input_gradient == "forward":
                image_gradient = tf.nn.conv2d(output_gradient, flipped, 1, full)
            elif input_gradient == "depthwise":
                # Channel o * C_in + i is output channel o's share of input channel i.
                shares = tf.nn.depthwise_conv2d(output_gradient, flipped, [1, 1, 1, 1], full)
                shape = tf.concat([tf.shape(shares)[:3], [kernel.shape[3], kernel.shape[2]]], 0)
                image_gradient = tf.reduce_sum(tf.reshape(shares, shape), axis=3)
            else:
                image_gradient = tf.raw_ops.Conv2DBackpropInput(
                    input_sizes=tf.shape(images), filter=kernel, out_backprop=output_gradient,
                    strides=[1, 1, 1, 1], padding=padding_name)
            if forward_kernel_gradient:
                # kernel_gradient[a, b, i, o] = sum over n, h, w of
                # padded[n, h + a, w + b, i] * output_gradient[n, h, w, o].
                padded = tf.pad(images, [[0, 0], list(pads[0]), list(pads[1]), [0, 0]])
                kernel_gradient = tf.transpose(tf.nn.conv2d(
                    tf.transpose(padded, [3, 1, 2, 0]),
                    tf.transpose(output_gradient, [1, 2, 0, 3]), 1, "VALID"), [1, 2, 0, 3])
            else:
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
    """`keras.layers.Conv2D` whose gradients are computed as forward convolutions
    where that is faster (see the module's docstring for the rule).

    Applies to stride 1, dilation 1, one group and `channels_last`; with
    TensorFlow's oneDNN operations, only to one input channel. Otherwise it is
    Keras' convolution unchanged.
    """

    def convolution_op(self, inputs, kernel):
        channels = inputs.shape[-1]
        if not (tuple(self.strides) == (1, 1) and tuple(self.dilation_rate) == (1, 1)
                and self.groups == 1 and self.data_format == "channels_last"
                and channels is not None):
            return super().convolution_op(inputs, kernel)
        if ONEDNN:  # oneDNN's kernels, but for a grey image layer's input gradient
            if channels != 1:
                return super().convolution_op(inputs, kernel)
            input_gradient, forward_kernel_gradient = "depthwise", False
        else:
            thin = channels < MIN_INPUT_CHANNELS
            wide = self.kernel_size[0] * self.kernel_size[1] >= MIN_KERNEL_AREA
            input_gradient, forward_kernel_gradient = "backprop" if thin else "forward", thin or wide
        return _conv2d(inputs, tf.convert_to_tensor(kernel), self.padding, input_gradient,
                       forward_kernel_gradient)


@keras.saving.register_keras_serializable(package="keras_icn")
class MaxPooling2D(keras.layers.MaxPooling2D):
    """`keras.layers.MaxPooling2D` with a compare-and-select gradient.

    Applies to windows that do not overlap (`strides == pool_size`), valid
    padding, `channels_last` and known spatial sizes, without TensorFlow's
    oneDNN operations; otherwise it is Keras' pooling unchanged.
    """

    def call(self, inputs):
        if (ONEDNN or tuple(self.strides) != tuple(self.pool_size) or self.padding != "valid"
                or self.data_format != "channels_last" or None in inputs.shape[1:]):
            return super().call(inputs)
        return _max_pool2d(inputs, tuple(self.pool_size))


@keras.saving.register_keras_serializable(package="keras_icn")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` through TensorFlow's fused kernel.

    Keras' layer normalizes with a chain of elementwise operations (moments, then
    scale and shift), each a pass over the activations, forward and backward.
    TensorFlow's FusedBatchNormV3 does each direction in one kernel: on an AMD
    EPYC Zen 4 (oneDNN operations on) a training-mode pass and its gradient over
    ResNet-32's first activations (176 x 32 x 32 x 16) took a third of Keras'
    time, an inference-mode one (every Langevin step) 0.7 (docs/performance.md).
    Outputs, gradients and moving statistics equal Keras' up to floating-point
    summation order (the moving variance is the batch's biased variance, as in
    Keras, not the kernel's Bessel-corrected one), but that the kernel takes an
    `epsilon` of at least 1.001e-5 (TensorFlow raises smaller ones to that).

    Applies to float32 inputs normalized over their last axis, without a mask,
    renormalization or `synchronized` statistics; otherwise it is Keras' layer
    unchanged.
    """

    def call(self, inputs, training=None, mask=None):
        channels = inputs.shape[-1]
        if (mask is not None or self.renorm or self.synchronized or channels is None
                or self.axis not in (-1, len(inputs.shape) - 1) or len(inputs.shape) < 2
                or inputs.dtype != tf.float32 or self.compute_dtype != "float32"):
            return super().call(inputs, training=training, mask=mask)
        # The kernel takes (N, H, W, C); any (N, ..., C) is that with H * W = the rest.
        images = (inputs if len(inputs.shape) == 4
                  else tf.reshape(inputs, [tf.shape(inputs)[0], -1, 1, channels]))
        scale = self.gamma if self.scale else tf.ones([channels])
        offset = self.beta if self.center else tf.zeros([channels])
        if training and self.trainable:
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                images, scale, offset, epsilon=self.epsilon, is_training=True)
            count = tf.cast(tf.size(images) // channels, tf.float32)
            variance = variance * (count - 1.0) / count  # the kernel returns it Bessel-corrected
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                images, scale, offset, mean=self.moving_mean, variance=self.moving_variance,
                epsilon=self.epsilon, is_training=False)
        return outputs if len(inputs.shape) == 4 else tf.reshape(outputs, tf.shape(inputs))

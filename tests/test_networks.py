import numpy as np
import pytest

from keras_icn import networks


def test_mnist_cnn_matches_the_reference_architecture():
    network = networks.mnist_cnn((28, 28, 1), 10)
    assert network.output_shape == (None, 10)
    # conv 5x5x1x32, conv 5x5x32x64, dense 3136x256, dense 256x10 (+ biases), as in
    # shared/peers/torch_sgld_reference.py.
    expected = (25 * 32 + 32) + (25 * 32 * 64 + 64) + (3136 * 256 + 256) + (256 * 10 + 10)
    assert network.count_params() == expected


def test_resnet32_has_32_layers_and_batch_norm():
    network = networks.resnet32((32, 32, 3), 10)
    assert network.output_shape == (None, 10)
    weighted = [l for l in network.layers if l.__class__.__name__ in ("Conv2D", "Dense")]
    shortcuts = [l for l in weighted if getattr(l, "kernel_size", None) == (1, 1)]
    assert len(weighted) - len(shortcuts) == 32
    assert any(l.__class__.__name__ == "BatchNormalization" for l in network.layers)
    logits = network(np.zeros((2, 32, 32, 3), "float32"), training=False)
    assert logits.shape == (2, 10)


def test_networks_by_name_and_image_size():
    assert networks.build("auto", (28, 28, 1), 10).name == "mnist_cnn"
    assert networks.build("auto", (32, 32, 3), 10).name == "fast_cnn"
    assert networks.build("resnet32", (32, 32, 3), 10).name == "resnet32"
    small = networks.build("resnet8", (32, 32, 3), 10)
    batch_norms = [l for l in small.layers if l.__class__.__name__ == "BatchNormalization"]
    # stem, 3 stages x 1 block x 2, and the 2 projection shortcuts
    assert len(batch_norms) == 1 + 6 + 2
    assert {l.momentum for l in batch_norms} == {networks.BATCH_NORM_MOMENTUM} == {0.9}
    with pytest.raises(ValueError, match=r"depth must be 6n \+ 2.*Received: depth=10"):
        networks.build("resnet10", (32, 32, 3), 10)
    with pytest.raises(ValueError, match="network must be one of"):
        networks.build("vgg16", (32, 32, 3), 10)


def test_series_and_table_networks_by_rank_and_name():
    assert networks.build("auto", (50, 3), 4).name == "fcn"
    assert networks.build("auto", (7,), 2).name == "mlp"
    network = networks.build("resnet1d", (50, 3), 4)
    assert network.output_shape == (None, 4)
    convolutions = [l for l in network.layers if l.__class__.__name__ == "Conv1D"]
    # 3 blocks x 3 convolutions, and the 1x1 shortcuts where the width changes (3 -> 64 -> 128)
    assert [l.kernel_size[0] for l in convolutions if l.kernel_size != (1,)] == [8, 5, 3] * 3
    assert sum(l.kernel_size == (1,) for l in convolutions) == 2
    assert network(np.zeros((2, 50, 3), "float32"), training=False).shape == (2, 4)
    with pytest.raises(ValueError, match=r"network='resnet1d' takes inputs of rank 2.*\(28, 28, 1\)"):
        networks.build("resnet1d", (28, 28, 1), 10)


def test_fast_cnn_is_airbench_shaped_and_whitens_its_first_layer():
    network = networks.build("fast_cnn", (32, 32, 3), 10)
    convolutions = [l for l in network.layers if l.__class__.__name__ == "Conv2D"]
    assert [l.filters for l in convolutions] == [64, 64, 256, 256, 256, 256]
    assert network.get_layer("whiten").compute_output_shape((None, 32, 32, 3)) == (None, 31, 31, 24)
    batch_norms = [l for l in network.layers if l.__class__.__name__ == "BatchNormalization"]
    assert len(batch_norms) == 6 and not any(l.scale for l in batch_norms)
    tiny = networks.build("fast_cnn8", (32, 32, 3), 10)
    assert [l.filters for l in tiny.layers if l.__class__.__name__ == "Conv2D"] == [8, 8, 32, 32, 32, 32]
    # Dirac: the first min(C_in, C_out) filters pass their channel through.
    kernel = convolutions[1].kernel.numpy()  # (3, 3, 64, 64)
    np.testing.assert_array_equal(kernel[1, 1], np.eye(64))
    assert not kernel[0].any() and not kernel[2].any()
    assert tiny(np.zeros((2, 32, 32, 3), "float32"), training=False).shape == (2, 10)
    assert networks.build("fast_cnn8", (9, 9, 3), 2).output_shape == (None, 2)  # the smallest
    assert networks.build("auto", (8, 8, 3), 2).name == "mnist_cnn"
    with pytest.raises(ValueError, match=r"at least 9x9 pixels. Received: input_shape=\(8, 8, 3\)"):
        networks.build("fast_cnn", (8, 8, 3), 2)

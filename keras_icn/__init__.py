"""keras-icn: Introspective Convolutional Networks in Keras 3 (TensorFlow backend)."""

import os

# TensorFlow's oneDNN operations (convolutions, pooling, matrix products) are off by
# default on some x86 CPUs, such as an AMD EPYC with AVX2, where they made a Langevin
# step a quarter faster (README, "Performance"); TensorFlow reads this setting when
# it is imported, so it takes effect where keras_icn is imported first, and a value
# the user set (0 turns them off) is kept.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from keras_icn import layers, pool_io
from keras_icn.callbacks import Checkpoint, DivergenceGuard, PoolWriter, SynthesisMonitor
from keras_icn.model import IntrospectiveClassifier
from keras_icn.networks import mnist_cnn, resnet, resnet32
from keras_icn.pool import PseudoNegativePool
from keras_icn.pool_io import read_pool
from keras_icn.prior import PixelPrior
from keras_icn.sampler import langevin_dynamics, langevin_step

__version__ = "0.1.0"

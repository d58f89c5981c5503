"""keras-icn: Introspective Convolutional Networks in Keras 3 (TensorFlow backend)."""

from keras_icn import layers, pool_io
from keras_icn.callbacks import Checkpoint, DivergenceGuard, PoolWriter, SynthesisMonitor
from keras_icn.model import IntrospectiveClassifier
from keras_icn.networks import mnist_cnn, resnet, resnet32
from keras_icn.pool import PseudoNegativePool
from keras_icn.pool_io import read_pool
from keras_icn.prior import PixelPrior
from keras_icn.sampler import langevin_dynamics, langevin_step

__version__ = "0.1.0"

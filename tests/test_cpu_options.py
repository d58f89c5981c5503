"""keras_icn.layers.ONEDNN follows TF_ENABLE_ONEDNN_OPTS, which TensorFlow reads when imported."""

import os
import platform
import subprocess
import sys

PROBE = ("import keras_icn; from tensorflow.python.framework import test_util; "
         "print(keras_icn.layers.ONEDNN, test_util.IsMklEnabled())")


def probe(**env):
    environment = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            timeout=300, env={**environment, "TF_CPP_MIN_LOG_LEVEL": "2", **env})
    assert result.returncode == 0, result.stderr[-3000:]
    return tuple(word == "True" for word in result.stdout.split())


def test_the_layers_see_whether_tensorflow_runs_its_onednn_operations():
    on, off = probe(TF_ENABLE_ONEDNN_OPTS="1"), probe(TF_ENABLE_ONEDNN_OPTS="0")
    assert off == (False, False)
    # The x86 wheels carry oneDNN; elsewhere the setting may have nothing to turn on.
    assert on == (True, True) or platform.machine() not in ("x86_64", "AMD64")

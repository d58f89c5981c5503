"""Importing keras_icn first turns TensorFlow's oneDNN operations on, unless the user chose."""

import os
import platform
import subprocess
import sys

PROBE = ("import keras_icn, os; from tensorflow.python.framework import test_util; "
         "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], test_util.IsMklEnabled())")


def probe(**env):
    environment = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            timeout=300, env={**environment, "TF_CPP_MIN_LOG_LEVEL": "2", **env})
    assert result.returncode == 0, result.stderr[-3000:]
    setting, enabled = result.stdout.split()
    return setting, enabled == "True"


def test_importing_keras_icn_first_turns_onednn_on():
    setting, enabled = probe()
    assert setting == "1"
    # The x86 wheels carry oneDNN; elsewhere the setting may have nothing to turn on.
    assert enabled or platform.machine() not in ("x86_64", "AMD64")


def test_a_setting_the_user_made_is_kept():
    assert probe(TF_ENABLE_ONEDNN_OPTS="0") == ("0", False)

"""tools/machine.py: the CPU by family and model, and oneDNN on where it is safe."""

import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import REPO
from keras_icn import config as config_lib

spec = importlib.util.spec_from_file_location("machine", REPO / "tools" / "machine.py")
machine = importlib.util.module_from_spec(spec)
spec.loader.exec_module(machine)

ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse avx fma avx2 bmi2

processor\t: 1
vendor_id\t: AuthenticAMD
"""
ZEN4 = ZEN3.replace("model\t\t: 1", "model\t\t: 17").replace(
    "avx2 bmi2", "avx2 avx512f avx512_bf16 avx512_vnni bmi2")


@pytest.mark.parametrize("text, generation, extensions", [
    (ZEN3, "Zen 3", ["avx2", "fma"]),
    (ZEN4, "Zen 4", ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni"]),
])
def test_both_amd_epycs_are_told_apart(tmp_path, text, generation, extensions):
    (tmp_path / "cpuinfo").write_text(text)
    info = machine.cpu(str(tmp_path / "cpuinfo"))
    assert (info["name"], info["generation"], info["extensions"]) == ("AMD EPYC", generation,
                                                                      extensions)
    model = 1 if generation == "Zen 3" else 17
    assert machine.describe_cpu(info).startswith(f"AMD EPYC, {generation} (family 25, model "
                                                 f"{model}; avx2, fma")


def test_an_unknown_cpu_is_named_by_family_and_model(tmp_path):
    (tmp_path / "cpuinfo").write_text(ZEN3.replace("cpu family\t: 25", "cpu family\t: 26"))
    info = machine.cpu(str(tmp_path / "cpuinfo"))
    assert info["generation"] is None
    assert machine.describe_cpu(info) == "AMD EPYC (family 26, model 1; avx2, fma)"


@pytest.mark.parametrize("argv, environ, expected, reason", [
    ([], {}, "1", "keras-icn's tools set TF_ENABLE_ONEDNN_OPTS=1"),
    (["--strategy=mirrored"], {}, "1", "tools set"),  # on GPUs, or one CPU device
    (["--strategy=mirrored", "--cpu_devices=2"], {}, None, "under MirroredStrategy on logical"),
    (["--strategy", "mirrored", "--cpu_devices", "2"], {}, None, "MirroredStrategy"),
    (["--strategy=multi_worker", "--cpu_devices=2"], {}, "1", "tools set"),
    ([], {"TF_ENABLE_ONEDNN_OPTS": "0"}, "0", "TF_ENABLE_ONEDNN_OPTS=0 in the environment"),
])
def test_onednn_is_turned_on_unless_the_user_chose_or_replicas_share_a_cpu(
        argv, environ, expected, reason, monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorflow")  # as before a tool imports it
    environ = dict(environ)
    assert reason in machine.prefer_onednn(argv, environ)
    assert environ.get("TF_ENABLE_ONEDNN_OPTS") == expected


def test_after_tensorflow_is_imported_nothing_is_set():
    environ = {}
    assert "imported before" in machine.prefer_onednn([], environ) and not environ


def test_train_help_lists_every_flag_in_one_group():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); sys.argv = ['train.py']; import train; "
            "print(sorted(n for names in train.HELP_GROUPS.values() for n in names))")
    listed = subprocess.run([sys.executable, "-c", code, str(REPO / "tools")], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert listed.returncode == 0, listed.stderr[-3000:]
    names = eval(listed.stdout.strip().splitlines()[-1])
    assert len(names) == len(set(names))  # each once
    assert set(names) == set(config_lib._FIELDS) | {"workdir", "start_over", "cpu_devices"}
    result = subprocess.run([sys.executable, str(REPO / "tools" / "train.py"), "--help"],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    for group in ("data:", "network:", "introspection:", "unknown:", "training:", "output:",
                  "scaling:"):
        assert f"\n{group}\n" in result.stdout
    for name in names:  # one line each
        assert sum(line.lstrip().startswith(f"--{name}=")
                   for line in result.stdout.splitlines()) == 1, name
    assert "--step_size=auto" in result.stdout and "--mode=icn" in result.stdout

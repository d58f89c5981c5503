"""tools/benchmark.py is a tool that prints numbers: check it runs and reports them all."""

import json
import os
import pathlib
import platform
import subprocess
import sys

import pytest

from conftest import REPO

KEYS = ("train_step_ms", "langevin_step_ms", "icn_step_ms", "icn_epoch_over_baseline",
        "pool_write_entries_per_s", "pool_memory_bytes_per_entry", "classify_ms_batch1",
        "classify_ms_batch128", "synthesize_images_per_s", "langevin_step_ms_batch4",
        "icn_step_ms_mirrored_1_replica", "mirrored_overhead", "icn_training_pass_ms",
        "icn_floor_ms")
# An interpreter with torch, for the PyTorch reference: TORCH_PYTHON, or where
# docs/performance.md installs it. CI has none (torch is no dependency).
TORCH_PYTHON = pathlib.Path(os.environ.get("TORCH_PYTHON", "/tmp/torchref/bin/python"))
TINY = ["--batch_size=8", "--repeats=1", "--langevin_steps=2", "--pool_entries=16"]


def run(command, **env):
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env})


def test_benchmark_prints_every_figure_as_json(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "benchmark.py"), "--json", "--batch_size=8",
         "--repeats=1", "--langevin_steps=2", "--pool_entries=16", "--scaling_batches=4",
         "--scaling_steps=3", f"--profile_dir={tmp_path}", "--per_layer"],
        capture_output=True, text=True, timeout=600,  # no TF_ENABLE_ONEDNN_OPTS, as a user runs it
        env={**{k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"},
             "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in KEYS:
        assert figures[key] > 0, key
    assert figures["pool_memory_bytes_per_entry"] == 4 * 28 * 28 + 16
    assert figures["batch_size"] == 8 and "langevin_vs_torch" not in figures
    assert "icn_step_vs_torch" not in figures and "torch_compile" not in figures
    # The floor: a training pass over the positives and the fresh and replayed
    # pseudo-negatives, and the chains' image-steps at the batch's cost per image.
    settings = figures["icn_settings"]
    assert figures["icn_training_pass_images"] == 8 + 16 + 32 == (
        8 + settings["synthesis_batch_size"] + settings["pool_batch_size"])
    assert figures["icn_floor_ms"] == pytest.approx(
        figures["icn_training_pass_ms"] + 16 * 5 * figures["langevin_step_ms"] / 8)
    assert figures["icn_overhead_over_floor"] == pytest.approx(
        figures["icn_step_ms"] / figures["icn_floor_ms"] - 1)
    assert figures["langevin_step_ms_batch4"] > 0 and figures["langevin_step_ms_steps3"] > 0
    assert list(tmp_path.glob("plugins/profile/*/*.xplane.pb"))  # the profiler trace
    machine = figures["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["devices"]
    # The CPU by family and model (lscpu's name alone does not tell AMD's apart),
    # and the oneDNN figures without any setting: the tool turned them on.
    assert "family" in machine["cpu"] and machine["cpu_family"] is not None
    assert isinstance(machine["vector_extensions"], list)
    assert machine["onednn_reason"].startswith("keras-icn's tools set TF_ENABLE_ONEDNN_OPTS=1")
    assert machine["onednn"] == "on" or platform.machine() not in ("x86_64", "AMD64")
    # Each keras_icn layer of the MNIST CNN against Keras' own: both convolutions with
    # three parts, both poolings with two.
    parts = sorted((row["layer"], row["part"]) for row in figures["layers"])
    convolutions = sorted({layer for layer, part in parts if part == "kernel gradient"})
    assert len(convolutions) == 2 and len(parts) == 2 * 3 + 2 * 2, parts
    assert all(row["keras_ms"] > 0 and row["ours_ms"] > 0 for row in figures["layers"])
    assert ("eigen_rule_ms" in figures["layers"][0]) == (machine["onednn"] == "on")
    assert [row["input_shape"] for row in figures["layers"]][0] == [28, 28, 1]


def test_benchmark_measures_a_resnet_on_colour_images_with_onednn_operations():
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "benchmark.py"), "--network=resnet8",
         "--batch_size=4", "--repeats=1", "--langevin_steps=2", "--pool_entries=8",
         "--per_layer"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("resnet8, batch 4")
    assert "ICN epoch / baseline epoch" in result.stdout
    assert "plain training step over 52 images" in result.stdout  # 4 + 16 + 32
    assert "ICN floor" in result.stdout and "ICN step / floor - 1" in result.stdout
    assert f"{4 * 32 * 32 * 3 + 16:.2f} bytes" in result.stdout  # pool memory per entry
    # With oneDNN operations, the layers under the rule for TensorFlow's own kernels too.
    assert "oneDNN on" in result.stdout and "Eigen rule" in result.stdout
    assert "32x32x3" in result.stdout  # the image layer's row


def test_benchmark_measures_fast_cnn_with_its_recipe():
    result = run([sys.executable, str(REPO / "tools" / "benchmark.py"), "--network=fast_cnn8",
                  "--json", "--batch_size=4", "--repeats=1", "--langevin_steps=2",
                  "--pool_entries=8", "--scaling_batches=4", "--per_layer"])
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in KEYS:
        assert figures[key] > 0, key
    assert figures["network"] == "fast_cnn8" and figures["batch_size"] == 4
    assert figures["pool_memory_bytes_per_entry"] == 4 * 32 * 32 * 3 + 16
    # The "fast" recipe: Nesterov SGD with decoupled weight decay, label smoothing,
    # and keras_icn's ICN defaults (16 chains of 5 steps from the batch, 32 replayed).
    assert figures["recipe"] == "fast"
    assert figures["optimizer"] == {"name": "SGD", "momentum": 0.85, "nesterov": True,
                                    "weight_decay": pytest.approx(0.0089)}
    assert figures["icn_settings"] == {"num_langevin_steps": 5, "synthesis_batch_size": 16,
                                       "pool_batch_size": 32, "synthesis": "data",
                                       "label_smoothing": 0.2}
    assert figures["icn_training_pass_images"] == 4 + 16 + 32
    # Its six 3x3 convolutions and four poolings against Keras' own; the fitted
    # whitening layer, no keras_icn layer, is not among them.
    parts = sorted((row["layer"], row["part"]) for row in figures["layers"])
    convolutions = sorted({layer for layer, part in parts if part == "kernel gradient"})
    assert len(convolutions) == 6 and len(parts) == 6 * 3 + 4 * 2, parts
    assert figures["layers"][0]["input_shape"] == [31, 31, 24]


def check_torch_reference(network, *options):
    """The PyTorch reference alone, at a tiny size: one line of setup and figures."""
    # One thread: torch's OpenMP threads crawl on a busy machine; no timing is checked.
    reference = run([str(TORCH_PYTHON), str(REPO / "tools" / "torch_resnet_reference.py"),
                     *options, "--batch_size=4", "--steps=2", "--synthesis_batch_size=4",
                     "--pool_batch_size=4"], OMP_NUM_THREADS="1")
    assert reference.returncode == 0, reference.stderr[-3000:]
    figures = json.loads(reference.stdout.strip().splitlines()[-1])
    assert figures["network"] == network and figures["torch_compile"] == "off"
    assert figures["framework"].startswith("torch ") and figures["batch_size"] == 4
    for key in ("train_step_ms", "langevin_step_ms", "icn_step_ms"):
        assert figures[key] > 0, key


def check_compare_torch(*options):
    """The benchmark with the PyTorch reference (no torch.compile): its figures."""
    result = run([sys.executable, str(REPO / "tools" / "benchmark.py"), "--json",
                  f"--compare_torch={TORCH_PYTHON}", "--notorch_compile", *options] + TINY,
                 OMP_NUM_THREADS="1")
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["torch"].startswith("torch ") and figures["torch_compile"] == "off"
    assert figures["icn_step_vs_torch"] == pytest.approx(
        figures["icn_step_ms"] / figures["torch_icn_step_ms"])
    assert figures["langevin_vs_torch"] == pytest.approx(
        figures["langevin_step_ms"] / figures["torch_langevin_step_ms"])
    assert figures["torch_train_step_ms"] > 0 and "icn_step_vs_torch_compiled" not in figures
    return figures


def test_compare_torch_reports_the_whole_icn_step_against_pytorch(tmp_path):
    # An interpreter without torch (a fresh venv): the benchmark stops with an
    # error naming it and what it lacks, instead of printing figures without torch's.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")],
                   check=True)
    bare = tmp_path / "venv" / "bin" / "python"
    result = run([sys.executable, str(REPO / "tools" / "benchmark.py"), "--json",
                  f"--compare_torch={bare}"] + TINY)
    assert result.returncode != 0 and not result.stdout.strip()
    assert f"--compare_torch={bare}" in result.stderr
    assert "No module named 'torch'" in result.stderr, result.stderr[-3000:]
    if not TORCH_PYTHON.exists():
        return  # no torch here (as in CI): the rest needs it
    check_torch_reference("resnet8", "--depth=8")
    check_compare_torch()
    check_torch_reference("fast_cnn8", "--network=fast_cnn8")
    figures = check_compare_torch("--network=fast_cnn8")
    assert figures["network"] == "fast_cnn8" and figures["recipe"] == "fast"

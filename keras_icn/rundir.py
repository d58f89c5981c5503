"""A run's directory (`--workdir`): every file name in it, resume checks, discard.

    <workdir>/config.json          the resolved Config, written first
    <workdir>/model.keras          the checkpoint, after every epoch
    <workdir>/metrics.json         at the end (or when training diverged)
    <workdir>/samples.png          the newest sample grid
    <workdir>/samples/epoch-NNN.png  one sample grid per epoch
    <workdir>/pool/                the pool's TFRecord shards
    <workdir>/tensorboard/         TensorBoard logs
    <workdir>/export/1/            the SavedModel for TF Serving

All I/O goes through `tf.io.gfile`, so a workdir may be a `gs://` path.
"""

import json
import os

import tensorflow as tf

from keras_icn import config as config_lib
from keras_icn import files

CONFIG = "config.json"
MODEL = "model.keras"
METRICS = "metrics.json"
SAMPLES = "samples.png"
SAMPLES_DIR = "samples"
EPOCH_SAMPLES = os.path.join(SAMPLES_DIR, "epoch-{epoch:03d}.png")  # formatted by SynthesisMonitor
POOL = "pool"
TENSORBOARD = "tensorboard"
TENSORBOARD_SAMPLES = os.path.join(TENSORBOARD, "samples")  # SynthesisMonitor's image summaries
EXPORT = "export"

# Settings a resumed run may change; any other change needs start_over.
RESUMABLE = ("epochs", "data_dir", "download", "skip_corrupt_shards", "strategy", "sample_every")


def read_json(path):
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


class RunDir:
    """The files of one training run, under `path`."""

    def __init__(self, path):
        self.path = str(path)

    def __repr__(self):
        return f"RunDir({self.path!r})"

    def file(self, name):
        """The path of `name` (one of this module's names) in the run."""
        return os.path.join(self.path, name)

    def export(self, version=1):
        return os.path.join(self.path, EXPORT, str(version))

    def epoch_sample_grids(self):
        """The per-epoch sample grids written so far, oldest first."""
        return sorted(tf.io.gfile.glob(self.file(EPOCH_SAMPLES.replace("{epoch:03d}", "*"))))

    def exists(self, name):
        return tf.io.gfile.exists(self.file(name))

    @property
    def has_checkpoint(self):
        return self.exists(MODEL)

    def read_config(self):
        """The run's `config.json` as a Config."""
        return config_lib.from_json(read_json(self.file(CONFIG)))

    def read_metrics(self):
        return read_json(self.file(METRICS))

    def write_json(self, name, value):
        tf.io.gfile.makedirs(self.path)
        files.write_json(self.file(name), value)

    def check_resumable(self, config):
        """Raises ValueError if the run here has other settings than `config` (a
        resolved config: see `config.resolve`); nothing to resume passes."""
        if not self.has_checkpoint or not self.exists(CONFIG):
            return  # nothing to resume: e.g. a run that stopped at a bad setting
        # A setting newer than the run counts as its default, or as what the run had
        # (read_config: config.from_json).
        previous = config_lib.to_json(self.read_config())
        current = config_lib.to_json(config)
        resumable = RESUMABLE if current["lr_schedule"] == "constant" else (
            tuple(k for k in RESUMABLE if k != "epochs"))  # the schedule spans the epochs
        changed = sorted(k for k in current if k not in resumable and previous[k] != current[k])
        if changed:
            details = ", ".join(f"{k}: {previous[k]!r} -> {current[k]!r}" for k in changed)
            raise ValueError(f"{self.path} holds a run with other settings ({details}). Resume it "
                             "with its settings, use another --workdir, or pass --start_over to "
                             "discard it.")

    def start(self, config, start_over=False):
        """Makes the directory ready for a run of `config`: discards an earlier run
        (`start_over`) or checks it can be resumed, then writes config.json."""
        tf.io.gfile.makedirs(self.path)
        if start_over:
            self.discard()
        else:
            self.check_resumable(config)
        self.write_json(CONFIG, config_lib.to_json(config))

    def discard(self):
        """Deletes every output of an earlier run (config.json is rewritten by `start`)."""
        for name in (MODEL, METRICS, SAMPLES):
            if self.exists(name):
                tf.io.gfile.remove(self.file(name))
        for name in (POOL, TENSORBOARD, EXPORT, SAMPLES_DIR):
            if self.exists(name):
                tf.io.gfile.rmtree(self.file(name))

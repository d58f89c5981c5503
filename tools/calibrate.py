"""Re-calibrates a trained model's "unknown" threshold without retraining, and re-exports it.

    python tools/calibrate.py --workdir=/tmp/w --inputs=known.npz
    python tools/calibrate.py --workdir=/tmp/w --split=validation --true_positive_rate=0.99

--inputs is an .npz file with an array `x` of held-out inputs of the known
classes in raw units (pixels 0..255 for an image model, the data's units for a
series or table model): the new threshold keeps --true_positive_rate of them
(see keras_icn.open_set). --split takes them from the run's own dataset
instead. The model (<workdir>/model.keras) is rewritten with the threshold,
atomically, and exported as the next version under <workdir>/export (or
--version), which TF Serving picks up as the newest; earlier versions stay.
"""

import sys

import machine

ONEDNN_REASON = machine.prefer_onednn()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from keras_icn import callbacks, rundir, serving  # noqa: E402
from keras_icn import config as config_lib  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A tools/train.py workdir (model.keras, config.json).")
flags.DEFINE_string("inputs", None, "An .npz file whose array x holds held-out inputs of the known classes, in raw units.")
flags.DEFINE_enum("split", None, ["validation", "test"], "Instead of --inputs: the run's held-out validation examples (or, for a check only, test).")
flags.DEFINE_float("true_positive_rate", 0.95, "The share of those inputs the threshold keeps.")
flags.DEFINE_integer("version", None, "Export version directory; default: one above the newest.")


def held_out_inputs(model, run_dir):
    """The inputs to calibrate on, in the model's units."""
    if FLAGS.inputs:
        with np.load(FLAGS.inputs, allow_pickle=False) as arrays:
            if "x" not in arrays:
                raise ValueError(f"{FLAGS.inputs} must hold an array named x; it holds "
                                 f"{sorted(arrays.files)}.")
            raw = arrays["x"].astype(np.float32)
        if raw.shape[1:] != model.input_shape:
            raise ValueError(f"x in {FLAGS.inputs} has shape {raw.shape}; the model takes "
                             f"(N,) + {model.input_shape}.")
        return model.from_raw(raw).numpy()
    config = run_dir.read_config()
    split = config_lib.evaluation_split(config, FLAGS.split)
    return config_lib.open_dataset(config).arrays(split, model)[0]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.workdir or (FLAGS.inputs is None) == (FLAGS.split is None):
        raise app.UsageError("Pass --workdir and exactly one of --inputs or --split.")
    logging.info(machine.describe(ONEDNN_REASON))
    run_dir = rundir.RunDir(FLAGS.workdir)
    try:
        model = keras.models.load_model(run_dir.file(rundir.MODEL))
        inputs = held_out_inputs(model, run_dir)
        before = model.unknown_threshold
        threshold = model.calibrate_unknown(inputs, FLAGS.true_positive_rate)
    except (ValueError, OSError) as error:
        sys.exit(f"error: {error}")
    kept = float(np.mean(~model.predict_open_set(inputs)["is_unknown"]))
    base = run_dir.file(rundir.EXPORT)
    versions = [int(v.strip("/")) for v in tf.io.gfile.listdir(base) if v.strip("/").isdigit()] \
        if tf.io.gfile.isdir(base) else []
    version = FLAGS.version or max(versions, default=0) + 1
    callbacks.save_model(model, run_dir.file(rundir.MODEL))
    path = serving.export_saved_model(model, run_dir.export(version))
    print(f"unknown threshold {before} -> {threshold:.6g} ({model.unknown_score}); keeps "
          f"{kept:.2%} of the {len(inputs)} inputs; exported {path}")


if __name__ == "__main__":
    app.run(main)

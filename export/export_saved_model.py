"""Exports a trained keras-icn model as a SavedModel for TF Serving.

    python export/export_saved_model.py --workdir=/tmp/w
    python export/export_saved_model.py --model=/tmp/w/model.keras --export_base=/models/icn --version=2

Writes <export_base>/<version>/ (TF Serving's layout) with the `classify`
(= serving_default) and `synthesize` signatures; see export/README.md.
"""

import os
import sys

import keras
from absl import app, flags

import keras_icn  # noqa: F401  (registers the custom objects load_model needs)
from keras_icn import rundir, serving
from keras_icn.model import METRICS

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A tools/train.py workdir: exports its model.keras.")
flags.DEFINE_string("model", None, "A .keras file to export (instead of --workdir).")
flags.DEFINE_string("export_base", None, "Model base path; default <workdir>/export.")
flags.DEFINE_integer("version", None, "Version directory; default one above the newest there.")
flags.DEFINE_integer("num_steps", None, "Langevin steps of `synthesize`; default the model's synthesis_steps.")
flags.DEFINE_enum("synthesis_metric", None, list(METRICS), "The metric of `synthesize`'s chains; default the model's (see keras_icn.IntrospectiveClassifier). Training does not depend on it, so any trained model can be exported with either.")
flags.DEFINE_bool("overwrite", False, "Replace an existing version directory.")


def next_version(export_base):
    versions = [int(name) for name in os.listdir(export_base) if name.isdigit()] \
        if os.path.isdir(export_base) else []
    return max(versions, default=0) + 1


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if (FLAGS.workdir is None) == (FLAGS.model is None):
        raise app.UsageError("Pass exactly one of --workdir or --model.")
    model_path = FLAGS.model or rundir.RunDir(FLAGS.workdir).file(rundir.MODEL)
    export_base = FLAGS.export_base or rundir.RunDir(
        FLAGS.workdir or os.path.dirname(model_path)).file(rundir.EXPORT)
    version = FLAGS.version or next_version(export_base)
    if not os.path.exists(model_path):
        sys.exit(f"error: no model at {model_path}: train one with tools/train.py first.")
    try:
        model = keras.models.load_model(model_path)
        if FLAGS.synthesis_metric:
            model.synthesis_metric = FLAGS.synthesis_metric
        path = serving.export_saved_model(model,
                                          os.path.join(export_base, str(version)),
                                          num_steps=FLAGS.num_steps, overwrite=FLAGS.overwrite)
    except ValueError as error:
        sys.exit(f"error: {error}")
    print(f"Exported {model_path} to {path}")


if __name__ == "__main__":
    app.run(main)

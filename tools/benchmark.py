"""Measures what an introspective model costs, in one process, and prints a table.

    python tools/benchmark.py                 # MNIST CNN, batch 128
    python tools/benchmark.py --json          # one JSON object
    python tools/benchmark.py --compare_torch=/tmp/torchref/bin/python
    python tools/benchmark.py --network=resnet32 --compare_torch=/tmp/torchref/bin/python
    python tools/benchmark.py --network=fast_cnn --batch_size=1024 --compare_torch=/tmp/torchref/bin/python
    python tools/benchmark.py --profile_dir=/tmp/profile   # then: tensorboard --logdir=/tmp/profile
    python tools/benchmark.py --per_layer      # also each keras_icn layer against Keras' own
    TF_ENABLE_ONEDNN_OPTS=0 python tools/benchmark.py   # without TensorFlow's oneDNN operations

Every figure is the median of --repeats timed runs after a warm-up, on random
inputs. The plain training step, the ICN step (also under a one-replica
MirroredStrategy), the Langevin step and a plain training step over as many
images as an ICN step's pass (positives and pseudo-negatives) are timed in
turns, one of each per round, so their ratios compare the same spells of the
machine. From these, the ICN step's floor: that training pass plus its chains'
image-steps at the per-image cost of a Langevin step at --batch_size, nothing
else (icn_floor_ms; icn_overhead_over_floor is our ICN step / floor - 1).
--compare_torch runs tools/torch_resnet_reference.py (the same network, the
Python-loop Langevin sampler of the PyTorch peers, and a PyTorch ICN step of
the same algorithm, eager and with torch.compile) with the given interpreter,
in one process that times one round of its figures in each of our rounds.
Models train with the optimizer and label smoothing of keras_icn's recipe for
the network (`keras_icn.config.recipe_name`, reported as "recipe"): Adam for the
MNIST CNN; for a ResNet with decoupled weight decay and a cosine schedule; for
fast_cnn ("fast") Nesterov SGD with decoupled weight decay, a warm-up and a
cosine schedule, and label smoothing 0.2 (that recipe trains at
--batch_size=1024). The PyTorch reference does the same without the schedules.
fast_cnn's whitening layer keeps its unfitted random filters (fitting them to
the data changes what it computes, not what it costs), and the classify
figures are without the test-time flips the "fast" recipe turns on.
Benchmarks print numbers; they assert nothing.
"""

import json
import os
import pathlib
import statistics
import subprocess
import tempfile
import time

import machine

ONEDNN_REASON = machine.prefer_onednn()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from keras_icn import IntrospectiveClassifier, networks, pool_io, serving, training  # noqa: E402
from keras_icn import config as config_lib  # noqa: E402
from keras_icn import layers as icn_layers  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("network", "mnist_cnn", "Network to measure: mnist_cnn (28x28x1 inputs), resnet<depth>, e.g. resnet32, or fast_cnn (fast_cnn<w>: widths w, 4w, 4w, e.g. fast_cnn8; 32x32x3).")
flags.DEFINE_integer("batch_size", 128, "Images per training step and per Langevin batch.")
flags.DEFINE_integer("repeats", 7, "Timed runs per figure (the median is reported).")
flags.DEFINE_integer("langevin_steps", 30, "Langevin steps in one compiled run (amortised).")
flags.DEFINE_integer("pool_entries", 4096, "Entries per shard in the pool-write measurement.")
flags.DEFINE_string("jit_compile", "false", "XLA for the training steps and the Langevin loop.")
flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.")
flags.DEFINE_string("compare_torch", None, "A Python with torch: run the PyTorch reference too.")
flags.DEFINE_bool("torch_compile", True, "With --compare_torch, also time the PyTorch ICN step "
                  "under torch.compile (compiling, once, can take minutes).")
flags.DEFINE_list("scaling_batches", [], "Also time a Langevin step at these batch sizes.")
flags.DEFINE_list("scaling_steps", [], "Also time a Langevin step amortised over these loop lengths.")
flags.DEFINE_string("profile_dir", None, "Also record a TensorFlow profiler trace of 5 ICN training steps here.")
flags.DEFINE_bool("per_layer", False, "Also time each keras_icn layer of the network alone against the Keras layer it replaces.")

TORCH_REFERENCE = pathlib.Path(__file__).resolve().parent / "torch_resnet_reference.py"
# The optimizer's learning-rate schedule needs a run length; its cost does not depend on it.
SCHEDULE_STEPS = 10_000


def measured_on():
    """What the figures were measured on: CPU by family and model, vector
    extensions, cores, TensorFlow's oneDNN operations and why, devices."""
    cpu = machine.cpu()
    return {
        "cpu": machine.describe_cpu(cpu),
        "cpu_vendor": cpu["vendor"],
        "cpu_family": cpu["family"],
        "cpu_model": cpu["model"],
        "cpu_generation": cpu["generation"],
        "vector_extensions": cpu["extensions"],
        "cores": os.cpu_count(),
        "onednn": "on" if icn_layers.ONEDNN else "off",  # TensorFlow's oneDNN operations
        "onednn_reason": ONEDNN_REASON,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "default",
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "default",
        "devices": [d.name for d in tf.config.list_logical_devices()],
    }


def elapsed_ms(function):
    start = time.perf_counter()
    function()
    return 1e3 * (time.perf_counter() - start)


def medians_in_turns(functions, repeats, each_round=None):
    """Times `functions` ({key: callable}) in turns, one call of each per round for
    `repeats` rounds, after a warm-up call of each, and runs `each_round()` once
    per round too: a slow spell of a noisy machine then falls on all of them
    alike. Returns {key: median ms}."""
    for function in functions.values():
        function()  # warm-up: tracing and first-call costs stay out of the figures
    times = {key: [] for key in functions}
    for _ in range(repeats):
        for key, function in functions.items():
            times[key].append(elapsed_ms(function))
        if each_round:
            each_round()
    return {key: statistics.median(values) for key, values in times.items()}


def median_ms(function, repeats):
    """The median ms of one function, after a warm-up call."""
    return medians_in_turns({None: function}, repeats)[None]


def make_model(mode, image_shape, jit_compile, strategy=None):
    """--network in an IntrospectiveClassifier with the label smoothing, compiled
    with the optimizer, that `tools/train.py` gives it (the recipe for the
    network: keras_icn.config)."""
    recipe = config_lib.Config(network=FLAGS.network).resolve(image_shape)
    with (strategy or tf.distribute.get_strategy()).scope():
        network = networks.build(FLAGS.network, image_shape, 10)
        model = IntrospectiveClassifier(network, 10, mode=mode, seed=0,
                                        label_smoothing=recipe.label_smoothing)
        model.compile(optimizer=training.make_optimizer(recipe, SCHEDULE_STEPS),
                      jit_compile=jit_compile)
    return model


def langevin_runner(model, batch_size, jit_compile, num_steps):
    """One compiled run of `num_steps` Langevin steps on a random batch; returns a callable."""
    rng = np.random.default_rng(batch_size)
    start = tf.constant(rng.uniform(size=(batch_size,) + model.image_shape), tf.float32)
    labels = tf.constant(rng.integers(0, 10, batch_size), tf.int32)
    chains = tf.function(lambda s, l: model.run_chains(s, l, num_steps,
                                                       tf.constant([1, 2], tf.int64)),
                         jit_compile=jit_compile)
    return lambda: chains(start, labels).numpy()


def layer_runner(layer, images, output_gradient, part):
    """A compiled run of `layer` alone on `images`: its forward pass, and with it
    the input or kernel gradient for `output_gradient`; returns a callable."""

    @tf.function
    def run():
        with tf.GradientTape() as tape:
            tape.watch(images)
            results = [layer(images)]
        if part == "input gradient":
            results.append(tape.gradient(results[0], images, output_gradients=output_gradient))
        elif part == "kernel gradient":
            results.append(tape.gradient(results[0], layer.kernel,
                                         output_gradients=output_gradient))
        # One number of each result: no large tensor is copied to the host, and the
        # forward pass runs also where the gradient does not need it (a linear layer's).
        return tf.stack([tf.reshape(result, [-1])[0] for result in results])

    run.get_concrete_function()  # traced now, under the caller's settings
    return lambda: run().numpy()


def per_layer(network, batch, repeats):
    """Each keras_icn layer of `network` alone, against the Keras layer it replaces
    (same configuration and weights): forward pass, forward pass + input gradient
    and, for convolutions, forward pass + kernel gradient, on random inputs at
    `batch`; all timed in turns, `repeats` rounds, medians in ms. Where
    TensorFlow's oneDNN operations are on, the layers' gradients under the rule
    for TensorFlow's own kernels are timed too ("eigen_rule_ms"): the measurement
    behind the rule for oneDNN's."""
    rng = np.random.default_rng(1)
    runners = []
    for layer in network.layers:
        if isinstance(layer, icn_layers.Conv2D):
            keras_class, parts = keras.layers.Conv2D, ("forward", "input gradient", "kernel gradient")
        elif isinstance(layer, icn_layers.MaxPooling2D):
            keras_class, parts = keras.layers.MaxPooling2D, ("forward", "input gradient")
        else:
            continue
        twin = keras_class.from_config(layer.get_config())
        twin.build(layer.input.shape)
        twin.set_weights(layer.get_weights())
        images = tf.constant(rng.normal(size=(batch,) + tuple(layer.input.shape[1:])), tf.float32)
        output_gradient = tf.constant(
            rng.normal(size=(batch,) + tuple(layer.output.shape[1:])), tf.float32)
        for part in parts:
            implementations = {"keras_ms": layer_runner(twin, images, output_gradient, part),
                               "ours_ms": layer_runner(layer, images, output_gradient, part)}
            if icn_layers.ONEDNN:
                icn_layers.ONEDNN = False
                try:
                    implementations["eigen_rule_ms"] = layer_runner(layer, images,
                                                                    output_gradient, part)
                finally:
                    icn_layers.ONEDNN = True
            runners.append(({"layer": layer.name, "input_shape": list(layer.input.shape[1:]),
                             "part": part}, implementations))
    medians = medians_in_turns({(index, key): function
                                for index, (_, implementations) in enumerate(runners)
                                for key, function in implementations.items()}, repeats)
    rows = []
    for index, (row, implementations) in enumerate(runners):
        row.update({key: medians[index, key] for key in implementations})
        row["ours_over_keras"] = row["ours_ms"] / row["keras_ms"]
        if "eigen_rule_ms" in row:
            row["eigen_rule_over_keras"] = row["eigen_rule_ms"] / row["keras_ms"]
        rows.append(row)
    return rows


class TorchReference:
    """tools/torch_resnet_reference.py --serve with the interpreter `python`, in
    its own process: warmed up (and compiled) when constructed, then one round of
    its figures per `round()`, while this process waits. `setup` says what runs."""

    def __init__(self, python, icn_settings):
        command = [python, str(TORCH_REFERENCE), "--serve", "--network", FLAGS.network,
                   "--batch_size", str(FLAGS.batch_size), "--steps", str(FLAGS.langevin_steps),
                   "--compile" if FLAGS.torch_compile else "--no-compile"]
        command += [f"--{name}={value}" for name, value in icn_settings.items()]
        self.errors = tempfile.TemporaryFile("w+")  # a pipe nobody reads could fill and block
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=self.errors, text=True)
        except OSError as error:
            raise app.UsageError(f"--compare_torch={python} cannot be run: {error}") from None
        self.setup = self._read()

    def _read(self):
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            self.errors.seek(0)
            raise RuntimeError(
                f"The PyTorch reference exited with code {self.process.returncode} "
                f"(--compare_torch={self.process.args[0]}, which needs torch: see "
                f"{TORCH_REFERENCE.name}). Its last output:\n{self.errors.read()[-3000:]}")
        return json.loads(line)

    def round(self):
        try:
            self.process.stdin.write("\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # it has exited: _read says why
        return self._read()

    def close(self):
        self.process.stdin.close()
        self.process.wait()
        self.errors.close()


def measure():
    image_shape = (28, 28, 1) if FLAGS.network == "mnist_cnn" else (32, 32, 3)
    jit_compile = FLAGS.jit_compile.lower() == "true"
    batch = FLAGS.batch_size
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(batch,) + image_shape).astype("float32")
    labels = rng.integers(0, 10, batch)
    results = {"network": FLAGS.network, "batch_size": batch, "jit_compile": jit_compile,
               "recipe": config_lib.recipe_name(image_shape, FLAGS.network),
               "tensorflow": tf.__version__, "keras": keras.__version__, "machine": measured_on()}

    baseline = make_model("baseline", image_shape, jit_compile)
    icn = make_model("icn", image_shape, jit_compile)
    # The distributed code path with one replica: what the strategy itself costs.
    mirrored = make_model("icn", image_shape, jit_compile,
                          tf.distribute.MirroredStrategy(["/cpu:0"]))
    # The floor's training pass: a plain step over the images of an ICN step's one
    # pass (positives, fresh and replayed pseudo-negatives), in a model of its own
    # so that each compiled step keeps one input shape.
    wide = make_model("baseline", image_shape, jit_compile)
    settings = icn.get_config()
    pass_images = batch + settings["synthesis_batch_size"] + settings["pool_batch_size"]
    wide_images = rng.uniform(size=(pass_images,) + image_shape).astype("float32")
    wide_labels = rng.integers(0, 10, pass_images)
    figures = {  # the figures that are compared with each other
        "train_step_ms": (lambda: baseline.train_on_batch(images, labels), 1),
        "icn_step_ms": (lambda: icn.train_on_batch(images, labels), 1),
        "langevin_step_ms": (langevin_runner(icn, batch, jit_compile, FLAGS.langevin_steps),
                             FLAGS.langevin_steps),
        "icn_step_ms_mirrored_1_replica": (lambda: mirrored.train_on_batch(images, labels), 1),
        "icn_training_pass_ms": (lambda: wide.train_on_batch(wide_images, wide_labels), 1),
    }
    # Timed in turns, with a round of the PyTorch reference in each round (when it
    # runs), so the ratios of one run compare like with like.
    theirs, reference = [], None
    if FLAGS.compare_torch:
        reference = TorchReference(FLAGS.compare_torch, {name: settings[name] for name in (
            "num_langevin_steps", "synthesis_batch_size", "pool_batch_size", "pool_capacity",
            "introspective_weight")})
    try:
        medians = medians_in_turns(
            {key: function for key, (function, _) in figures.items()}, FLAGS.repeats,
            (lambda: theirs.append(reference.round())) if reference else None)
    finally:
        if reference:
            reference.close()
    results.update({key: medians[key] / steps for key, (_, steps) in figures.items()})
    if FLAGS.profile_dir:  # open with TensorBoard's profile plugin (tensorboard-plugin-profile)
        tf.profiler.experimental.start(FLAGS.profile_dir)
        for _ in range(5):
            icn.train_on_batch(images, labels)
        tf.profiler.experimental.stop()
    results["mirrored_overhead"] = results["icn_step_ms_mirrored_1_replica"] / results["icn_step_ms"]
    # Same data, same steps per epoch: the epoch ratio is the step ratio.
    results["icn_epoch_over_baseline"] = results["icn_step_ms"] / results["train_step_ms"]
    results["icn_settings"] = {k: settings[k] for k in (
        "num_langevin_steps", "synthesis_batch_size", "pool_batch_size", "synthesis",
        "label_smoothing")}
    optimizer = icn.optimizer.get_config()
    results["optimizer"] = {"name": type(icn.optimizer).__name__, **{
        k: optimizer[k] for k in ("momentum", "nesterov", "weight_decay") if k in optimizer}}
    # The floor: the pass over positives and pseudo-negatives, and each chain's
    # image-steps at what one image costs in a Langevin step of the whole batch.
    chain_image_steps = settings["synthesis_batch_size"] * settings["num_langevin_steps"]
    results["icn_training_pass_images"] = pass_images
    results["icn_floor_ms"] = (results["icn_training_pass_ms"]
                               + chain_image_steps * results["langevin_step_ms"] / batch)
    results["icn_overhead_over_floor"] = results["icn_step_ms"] / results["icn_floor_ms"] - 1

    results["langevin_over_train_step"] = results["langevin_step_ms"] / results["train_step_ms"]
    if reference:
        results["torch"] = reference.setup["framework"]
        results["torch_compile"] = reference.setup["torch_compile"]  # on, off, or failed: why
        for figure in ("train_step_ms", "langevin_step_ms", "icn_step_ms", "icn_step_ms_compiled"):
            if figure in theirs[0]:
                results[f"torch_{figure}"] = statistics.median(t[figure] for t in theirs)
        results["langevin_vs_torch"] = results["langevin_step_ms"] / results["torch_langevin_step_ms"]
        results["icn_step_vs_torch"] = results["icn_step_ms"] / results["torch_icn_step_ms"]
        if "torch_icn_step_ms_compiled" in results:
            results["icn_step_vs_torch_compiled"] = (results["icn_step_ms"]
                                                     / results["torch_icn_step_ms_compiled"])
    for size in map(int, FLAGS.scaling_batches):
        results[f"langevin_step_ms_batch{size}"] = median_ms(
            langevin_runner(icn, size, jit_compile, FLAGS.langevin_steps),
            FLAGS.repeats) / FLAGS.langevin_steps
    for steps in map(int, FLAGS.scaling_steps):
        results[f"langevin_step_ms_steps{steps}"] = median_ms(
            langevin_runner(icn, batch, jit_compile, steps), FLAGS.repeats) / steps

    if FLAGS.per_layer:
        results["layers"] = per_layer(icn.network, batch, FLAGS.repeats)

    entries = FLAGS.pool_entries
    shard = {"index": np.arange(entries), "label": rng.integers(0, 10, entries),
             "image": rng.uniform(size=(entries,) + image_shape).astype("float32"),
             "step": np.zeros(entries, "int64"), "epoch": np.zeros(entries, "int64"),
             "score": rng.uniform(size=entries).astype("float32")}
    with tempfile.TemporaryDirectory() as directory:
        write_ms = median_ms(lambda: pool_io.write_shard(directory, shard, "fresh"), FLAGS.repeats)
        results["pool_write_entries_per_s"] = entries / (write_ms / 1e3)
        results["pool_shard_bytes_per_entry"] = os.path.getsize(
            pool_io.shard_paths(directory)[0]) / entries
    # images float32 + label int32 + step int64 + score float32, on the device
    results["pool_memory_bytes_per_entry"] = 4 * int(np.prod(image_shape)) + 4 + 8 + 4

    with tempfile.TemporaryDirectory() as directory:
        serving.export_saved_model(icn, os.path.join(directory, "1"))
        loaded = tf.saved_model.load(os.path.join(directory, "1"))
        classify, synthesize = loaded.signatures["classify"], loaded.signatures["synthesize"]
        raw = tf.constant(rng.uniform(0, 255, (128,) + image_shape), tf.float32)
        results["classify_ms_batch1"] = median_ms(lambda: classify(images=raw[:1]), FLAGS.repeats)
        results["classify_ms_batch128"] = median_ms(lambda: classify(images=raw), FLAGS.repeats)
        wanted = tf.constant(labels, tf.int32)
        seeds = tf.range(batch, dtype=tf.int32)
        synthesize_ms = median_ms(lambda: synthesize(labels=wanted, seeds=seeds), FLAGS.repeats)
        results["synthesize_images_per_s"] = batch / (synthesize_ms / 1e3)
        results["synthesize_steps"] = icn.synthesis_steps
    return results


def print_table(results):
    rows = [
        ("plain training step (cross-entropy)", "train_step_ms", "ms"),
        ("Langevin step (amortised)", "langevin_step_ms", "ms"),
        ("  / plain training step", "langevin_over_train_step", "x"),
        ("ICN training step (defaults)", "icn_step_ms", "ms"),
        ("ICN epoch / baseline epoch", "icn_epoch_over_baseline", "x"),
        ("ICN step, MirroredStrategy, 1 replica", "icn_step_ms_mirrored_1_replica", "ms"),
        ("  / without a strategy", "mirrored_overhead", "x"),
        (f"plain training step over {results['icn_training_pass_images']} images",
         "icn_training_pass_ms", "ms"),
        ("ICN floor (that + chains at batch cost)", "icn_floor_ms", "ms"),
        ("ICN step / floor - 1", "icn_overhead_over_floor", "x"),
        ("PyTorch reference training step", "torch_train_step_ms", "ms"),
        ("PyTorch reference Langevin step", "torch_langevin_step_ms", "ms"),
        ("our Langevin step / PyTorch's", "langevin_vs_torch", "x"),
        ("PyTorch ICN step, eager", "torch_icn_step_ms", "ms"),
        ("our ICN step / PyTorch eager's", "icn_step_vs_torch", "x"),
        ("PyTorch ICN step, torch.compile", "torch_icn_step_ms_compiled", "ms"),
        ("our ICN step / PyTorch compiled", "icn_step_vs_torch_compiled", "x"),
        ("pool write", "pool_write_entries_per_s", "entries/s"),
        ("pool memory per entry", "pool_memory_bytes_per_entry", "bytes"),
        ("pool shard size per entry (GZIP)", "pool_shard_bytes_per_entry", "bytes"),
        ("SavedModel classify, batch 1", "classify_ms_batch1", "ms"),
        ("SavedModel classify, batch 128", "classify_ms_batch128", "ms"),
        ("SavedModel synthesize", "synthesize_images_per_s", "images/s"),
    ]
    rows += [(f"Langevin step, batch {k[len('langevin_step_ms_batch'):]}", k, "ms")
             for k in results if k.startswith("langevin_step_ms_batch")]
    rows += [(f"Langevin step, loop of {k[len('langevin_step_ms_steps'):]} steps", k, "ms")
             for k in results if k.startswith("langevin_step_ms_steps")]
    print(f"{results['network']}, batch {results['batch_size']}, recipe {results['recipe']} "
          f"({results['optimizer']['name']}), jit_compile="
          f"{results['jit_compile']}, TensorFlow {results['tensorflow']}"
          + (f", vs {results['torch']} (torch.compile {results['torch_compile']})"
             if "torch" in results else ""))
    where = results["machine"]
    print(f"on {where['cpu']}, {where['cores']} cores, oneDNN {where['onednn']} "
          f"({where['onednn_reason']}), devices {where['devices']}")
    for title, key, unit in rows:
        if key in results:
            print(f"  {title:<40} {results[key]:>10.2f} {unit}")
    if "layers" in results:
        eigen = "eigen_rule_ms" in results["layers"][0]
        print("  each layer alone, ms (the gradients' times include the forward pass):")
        print(f"  {'layer':<24} {'input':<14} {'part':<16} {'Keras':>8} {'keras_icn':>10} {'ratio':>6}"
              + (f" {'Eigen rule':>11} {'ratio':>6}" if eigen else ""))
        for row in results["layers"]:
            shape = "x".join(map(str, row["input_shape"]))
            print(f"  {row['layer']:<24} {shape:<14} {row['part']:<16} {row['keras_ms']:>8.2f} "
                  f"{row['ours_ms']:>10.2f} {row['ours_over_keras']:>6.2f}"
                  + (f" {row['eigen_rule_ms']:>11.2f} {row['eigen_rule_over_keras']:>6.2f}"
                     if eigen else ""))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.info(machine.describe(ONEDNN_REASON))
    results = measure()
    if FLAGS.json:
        print(json.dumps(results))
    else:
        print_table(results)


if __name__ == "__main__":
    app.run(main)

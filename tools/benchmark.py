"""Measures what an introspective model costs, in one process, and prints a table.

    python tools/benchmark.py                 # MNIST CNN, batch 128
    python tools/benchmark.py --json          # one JSON object
    python tools/benchmark.py --compare_torch=/tmp/torchref/bin/python
    python tools/benchmark.py --network=resnet32 --compare_torch=/tmp/torchref/bin/python
    python tools/benchmark.py --profile_dir=/tmp/profile   # then: tensorboard --logdir=/tmp/profile
    python tools/benchmark.py --per_layer      # also each keras_icn layer against Keras' own
    TF_ENABLE_ONEDNN_OPTS=0 python tools/benchmark.py   # without TensorFlow's oneDNN operations

Every figure is the median of --repeats timed runs after a warm-up, on random
inputs. The plain training step, the ICN step (also under a one-replica
MirroredStrategy) and the Langevin step are timed in turns, one of each per
round, so their ratios compare the same spells of the machine. --compare_torch
runs the same network with the Python-loop Langevin sampler of the PyTorch
peers (../shared/peers/torch_sgld_reference.py for the MNIST CNN,
tools/torch_resnet_reference.py for the ResNets) with the given interpreter,
once per round as well. Benchmarks print numbers; they assert nothing.
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

from keras_icn import IntrospectiveClassifier, networks, pool_io, serving  # noqa: E402
from keras_icn import layers as icn_layers  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("network", "mnist_cnn", "Network to measure: mnist_cnn (28x28x1 inputs) or resnet<depth>, e.g. resnet32 (32x32x3).")
flags.DEFINE_integer("batch_size", 128, "Images per training step and per Langevin batch.")
flags.DEFINE_integer("repeats", 7, "Timed runs per figure (the median is reported).")
flags.DEFINE_integer("langevin_steps", 30, "Langevin steps in one compiled run (amortised).")
flags.DEFINE_integer("pool_entries", 4096, "Entries per shard in the pool-write measurement.")
flags.DEFINE_string("jit_compile", "false", "XLA for the training steps and the Langevin loop.")
flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.")
flags.DEFINE_string("compare_torch", None, "A Python with torch: run the PyTorch reference too.")
flags.DEFINE_list("scaling_batches", [], "Also time a Langevin step at these batch sizes.")
flags.DEFINE_list("scaling_steps", [], "Also time a Langevin step amortised over these loop lengths.")
flags.DEFINE_string("profile_dir", None, "Also record a TensorFlow profiler trace of 5 ICN training steps here.")
flags.DEFINE_bool("per_layer", False, "Also time each keras_icn layer of the network alone against the Keras layer it replaces.")

PEERS = pathlib.Path(__file__).resolve().parents[2] / "shared" / "peers"


def torch_reference():
    """The PyTorch reference script of --network, and its extra arguments."""
    if FLAGS.network == "mnist_cnn":
        return PEERS / "torch_sgld_reference.py", []
    depth = FLAGS.network[len("resnet"):]
    if not (FLAGS.network.startswith("resnet") and depth.isdigit()):
        raise app.UsageError("--compare_torch needs --network=mnist_cnn or resnet<depth>. "
                             f"Received: --network={FLAGS.network}")
    return pathlib.Path(__file__).resolve().parent / "torch_resnet_reference.py", [
        "--depth", depth]


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
    with (strategy or tf.distribute.get_strategy()).scope():
        network = networks.build(FLAGS.network, image_shape, 10)
        model = IntrospectiveClassifier(network, 10, mode=mode, seed=0)
        model.compile(optimizer="adam", jit_compile=jit_compile)
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


def run_torch(python):
    script, extra = torch_reference()
    command = [python, str(script), "--batch_size", str(FLAGS.batch_size),
               "--steps", str(FLAGS.langevin_steps)] + extra
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def measure():
    image_shape = (28, 28, 1) if FLAGS.network == "mnist_cnn" else (32, 32, 3)
    jit_compile = FLAGS.jit_compile.lower() == "true"
    batch = FLAGS.batch_size
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(batch,) + image_shape).astype("float32")
    labels = rng.integers(0, 10, batch)
    results = {"network": FLAGS.network, "batch_size": batch, "jit_compile": jit_compile,
               "tensorflow": tf.__version__, "keras": keras.__version__, "machine": measured_on()}

    baseline = make_model("baseline", image_shape, jit_compile)
    icn = make_model("icn", image_shape, jit_compile)
    # The distributed code path with one replica: what the strategy itself costs.
    mirrored = make_model("icn", image_shape, jit_compile,
                          tf.distribute.MirroredStrategy(["/cpu:0"]))
    figures = {  # the figures that are compared with each other
        "train_step_ms": (lambda: baseline.train_on_batch(images, labels), 1),
        "icn_step_ms": (lambda: icn.train_on_batch(images, labels), 1),
        "langevin_step_ms": (langevin_runner(icn, batch, jit_compile, FLAGS.langevin_steps),
                             FLAGS.langevin_steps),
        "icn_step_ms_mirrored_1_replica": (lambda: mirrored.train_on_batch(images, labels), 1),
    }
    # Timed in turns, with the PyTorch reference's run in each round (when it runs),
    # so the ratios of one run compare like with like.
    theirs = []
    medians = medians_in_turns(
        {key: function for key, (function, _) in figures.items()}, FLAGS.repeats,
        (lambda: theirs.append(run_torch(FLAGS.compare_torch))) if FLAGS.compare_torch else None)
    results.update({key: medians[key] / steps for key, (_, steps) in figures.items()})
    if FLAGS.profile_dir:  # open with TensorBoard's profile plugin (tensorboard-plugin-profile)
        tf.profiler.experimental.start(FLAGS.profile_dir)
        for _ in range(5):
            icn.train_on_batch(images, labels)
        tf.profiler.experimental.stop()
    results["mirrored_overhead"] = results["icn_step_ms_mirrored_1_replica"] / results["icn_step_ms"]
    # Same data, same steps per epoch: the epoch ratio is the step ratio.
    results["icn_epoch_over_baseline"] = results["icn_step_ms"] / results["train_step_ms"]
    results["icn_settings"] = {k: icn.get_config()[k] for k in (
        "num_langevin_steps", "synthesis_batch_size", "pool_batch_size", "synthesis")}

    results["langevin_over_train_step"] = results["langevin_step_ms"] / results["train_step_ms"]
    if theirs:
        results["torch"] = theirs[0]["framework"]
        results["torch_train_step_ms"] = statistics.median(t["train_step_ms"] for t in theirs)
        results["torch_langevin_step_ms"] = statistics.median(t["langevin_step_ms"] for t in theirs)
        results["langevin_vs_torch"] = results["langevin_step_ms"] / results["torch_langevin_step_ms"]
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
        ("PyTorch reference training step", "torch_train_step_ms", "ms"),
        ("PyTorch reference Langevin step", "torch_langevin_step_ms", "ms"),
        ("our Langevin step / PyTorch's", "langevin_vs_torch", "x"),
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
    print(f"{results['network']}, batch {results['batch_size']}, jit_compile="
          f"{results['jit_compile']}, TensorFlow {results['tensorflow']}"
          + (f", vs {results['torch']}" if "torch" in results else ""))
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
    if FLAGS.compare_torch:
        script, _ = torch_reference()
        if not script.exists():
            raise app.UsageError(f"--compare_torch needs {script}")
    results = measure()
    if FLAGS.json:
        print(json.dumps(results))
    else:
        print_table(results)


if __name__ == "__main__":
    app.run(main)

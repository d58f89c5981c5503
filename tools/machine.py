"""The machine the tools run on: its CPU by family and model, and TensorFlow's
oneDNN operations, which the tools turn on where that is safe.

TensorFlow reads `TF_ENABLE_ONEDNN_OPTS` once, when it is imported. Left unset,
TensorFlow 2.21 runs its oneDNN operations on Intel CPUs and AMD Zen 4, but not
on AMD Zen 3, where they make a Langevin step a quarter faster (docs/performance.md).
So every tool calls `prefer_onednn()` before it imports TensorFlow:

    import machine
    ONEDNN_REASON = machine.prefer_onednn()  # before TensorFlow is imported
    import tensorflow as tf

`lscpu` calls both AMD generations "AMD EPYC"; `cpu()` names a CPU by vendor,
family, model and vector extensions, as every benchmark figure must.
"""

import os
import sys

VARIABLE = "TF_ENABLE_ONEDNN_OPTS"

# (vendor, family, model) -> generation, for the CPUs this project has run on.
GENERATIONS = {("AuthenticAMD", 25, 1): "Zen 3", ("AuthenticAMD", 25, 17): "Zen 4"}
EXTENSIONS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")


def _flag(argv, name):
    """The last value given for `--name` in `argv` (`--name=V` or `--name V`), or None."""
    value = None
    for index, argument in enumerate(argv):
        if argument.startswith(f"--{name}="):
            value = argument.split("=", 1)[1]
        elif argument == f"--{name}" and index + 1 < len(argv):
            value = argv[index + 1]
    return value


def prefer_onednn(argv=None, environ=os.environ):
    """Sets `TF_ENABLE_ONEDNN_OPTS=1` where the user has not set it and no
    MirroredStrategy runs on logical CPU devices (`--strategy=mirrored` with
    `--cpu_devices` above 1); returns why oneDNN is in the state it will be in.

    Call it before TensorFlow is imported: afterwards the setting does nothing.
    """
    argv = sys.argv[1:] if argv is None else argv
    if "tensorflow" in sys.modules:
        return "TensorFlow was imported before the tool could choose: its default"
    if VARIABLE in environ:
        return f"{VARIABLE}={environ[VARIABLE]} in the environment"
    devices = _flag(argv, "cpu_devices")
    if _flag(argv, "strategy") == "mirrored" and devices and devices.isdigit() and int(devices) > 1:
        return ("TensorFlow's default for this CPU: keras-icn leaves it under MirroredStrategy on "
                "logical CPU devices")
    environ[VARIABLE] = "1"
    return f"keras-icn's tools set {VARIABLE}=1; set it to 0 to turn them off"


def cpu(cpuinfo="/proc/cpuinfo"):
    """`{vendor, name, family, model, generation, extensions}` of this machine's CPU."""
    fields, flags = {}, set()
    if os.path.exists(cpuinfo):
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = (part.strip() for part in line.partition(":"))
                if key == "flags":
                    flags = set(value.split())
                elif key in ("vendor_id", "model name", "cpu family", "model") and value:
                    fields.setdefault(key, value)
                if not line.strip() and fields:  # the first processor is enough
                    break
    vendor = fields.get("vendor_id", "unknown")
    family = int(fields["cpu family"]) if fields.get("cpu family", "").isdigit() else None
    model = int(fields["model"]) if fields.get("model", "").isdigit() else None
    return {"vendor": vendor, "name": fields.get("model name", "unknown"), "family": family,
            "model": model, "generation": GENERATIONS.get((vendor, family, model)),
            "extensions": [name for name in EXTENSIONS if name in flags]}


def describe_cpu(info=None):
    """One line naming the CPU, e.g. "AMD EPYC, Zen 4 (family 25, model 17; avx2, ...)"."""
    info = info or cpu()
    generation = f", {info['generation']}" if info["generation"] else ""
    return (f"{info['name']}{generation} (family {info['family']}, model {info['model']}; "
            f"{', '.join(info['extensions']) or 'no AVX2'})")


def onednn_on():
    """Whether TensorFlow runs its oneDNN operations (imports TensorFlow)."""
    from keras_icn import layers

    return layers.ONEDNN


def describe(reason):
    """The log line of a tool: the CPU, and oneDNN's state with `reason`."""
    return (f"CPU: {describe_cpu()}, {os.cpu_count()} cores; TensorFlow's oneDNN operations "
            f"{'on' if onednn_on() else 'off'} ({reason})")

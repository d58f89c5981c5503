"""The README's and the docs pages' commands and code are what users run first: keep
them working, and keep every relative link and anchor between the pages resolving."""

import os
import platform
import re
import subprocess
import sys
import unicodedata

import numpy as np

from conftest import REPO, make_dataset, make_model, tfds_data_dir

README = (REPO / "README.md").read_text()
PAGES = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def code_block(page, after, language="python"):
    """The first ```language block after the text `after` on `page` (relative to REPO)."""
    text = (REPO / page).read_text()
    words = r"\s+".join(re.escape(word) for word in after.split())  # across line breaks
    match = re.search(words + r".*?```" + language + r"\n(.*?)```", text, re.S)
    assert match, f"{page}: no ```{language} block after {after!r}"
    return match.group(1)


def run_python(code, cwd, env=ENV, timeout=600):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, cwd=cwd, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_ci_runs_the_readme_test_command():
    command = re.search(r"Run the tests.*?```bash\n(.*?)\n```", README, re.S).group(1)
    assert "python -m pytest" in command
    assert command in (REPO / ".ci" / "run").read_text()


def test_the_custom_backbone_example_trains_and_synthesizes_the_requested_labels(tmp_path):
    code = re.search(r"## Your own backbone.*?```python\n(.*?)```", README, re.S).group(1)
    env = {**ENV, "TFDS_DATA_DIR": tfds_data_dir()}
    stdout = run_python(code, tmp_path, env)
    logs = re.search(r"^\{.*\}$", stdout, re.M).group(0)
    for name in ("loss", "accuracy", "introspective_loss", "pseudo_negative_acceptance",
                 "pool_size"):
        assert f"'{name}'" in logs, logs
    asked, classified = re.search(r"asked for \[(.*?)\] classified as \[(.*?)\]",
                                  stdout, re.S).groups()
    asked, classified = asked.split(), classified.split()
    matches = sum(a == c for a, c in zip(asked, classified))
    assert len(asked) == 10 and matches >= 9, stdout[-500:]


def test_the_own_files_example_trains_on_a_folder_of_images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in range(10):
        folder = tmp_path / "my_images" / str(label)
        folder.mkdir(parents=True)
        for i in range(8):  # 80 images: one batch of 64
            Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / f"{i}.png")
    code = code_block("docs/data.md", "## Your own files")
    stdout = run_python(code + "\nprint('classes', len(folder.class_names))\n", tmp_path)
    assert "classes 10" in stdout and "introspective_loss" in stdout, stdout[-1000:]


def test_the_plain_tf_data_pool_reader_reads_shards(tmp_path):
    from keras_icn import pool_io

    entries = {"index": np.arange(5), "image": np.random.rand(5, 28, 28, 1).astype("float32"),
               "label": np.arange(5), "step": np.zeros(5), "epoch": np.zeros(5),
               "score": np.ones(5)}
    pool_io.write_shard(str(tmp_path), entries, "fresh")
    code = code_block("docs/pool.md", "Plain `tf.data` reads it:")
    namespace = {"tf": __import__("tensorflow")}
    exec(code.replace("/tmp/w/pool", str(tmp_path)), namespace)
    records = list(namespace["pool"])
    assert [int(r["label"]) for r in records] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(records[2]["image"].numpy(), entries["image"][2])


def test_the_pool_audit_command_runs_on_a_stored_pool(tmp_path):
    from keras_icn import pool_io

    rng = np.random.default_rng(0)
    entries = {"index": np.arange(20), "image": rng.random((20, 28, 28, 1), "float32"),
               "label": np.arange(20) % 10, "step": np.arange(20) // 10,
               "epoch": np.zeros(20), "score": rng.random(20)}
    pool_io.write_shard(str(tmp_path / "w" / "pool"), entries, "data")
    command = code_block("docs/pool.md", "## The pool as an audit trail", "bash").strip()
    assert command.startswith("python tools/pool.py ")
    arguments = command.replace("/tmp/w", str(tmp_path / "w")).split()[2:]
    result = subprocess.run([sys.executable, str(REPO / "tools" / "pool.py"), *arguments],
                            capture_output=True, text=True, timeout=600,
                            env={**ENV, "TFDS_DATA_DIR": tfds_data_dir()})
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / "w" / "pool-grids").iterdir()), "no grid written"


def test_the_pool_resume_example_continues_the_pool_and_checkpoints(tmp_path):
    import keras

    import keras_icn

    mine = tmp_path / "mine"
    model = make_model()
    writer = keras_icn.PoolWriter(str(mine / "pool"))
    model.fit(make_dataset(count=128), epochs=1, shuffle=False, verbose=0, callbacks=[
        writer, keras_icn.Checkpoint(str(mine / "model.keras"), pool_writer=writer)])
    code = code_block("docs/pool.md", "is just loading the checkpoint and fitting:")
    namespace = {"keras": keras, "keras_icn": keras_icn, "data": make_dataset(count=128),
                 "epochs_done": 1}
    exec(code.replace("/tmp/mine", str(mine)), namespace)
    made = 10 * 4 * 8  # 10 epochs of 4 steps, 8 pseudo-negatives a step
    indexes = sorted(int(entry["index"]) for entry in keras_icn.read_pool(str(mine / "pool")))
    assert indexes == list(range(made))  # every entry once, the first epoch's too
    resumed = keras.models.load_model(str(mine / "model.keras"))
    assert int(resumed.pool.count.numpy()) == made


def test_the_serving_example_synthesizes_in_a_tensorflow_only_process(tmp_path):
    from keras_icn import serving

    serving.export_saved_model(make_model(num_classes=10), str(tmp_path / "export" / "1"))
    code = code_block("docs/serving.md", "any process with TensorFlow alone:")
    assert code == code_block("README.md", "## Serving")  # the README shows the same lines
    code = code.replace("/tmp/w", str(tmp_path))
    stdout = run_python(code + "\nimport sys\nprint(sorted(out), tuple(out['images'].shape),"
                               " 'keras_icn' in sys.modules)\n", tmp_path)
    assert "['images', 'scores'] (2, 8, 8, 1) False" in stdout, stdout


def test_the_logical_cpu_devices_example_makes_two_replicas(tmp_path):
    code = code_block("docs/scaling.md", "## On a machine without GPUs")
    stdout = run_python("import tensorflow as tf\n" + code + "\nprint(strategy.num_replicas_in_sync)\n",
                        tmp_path)
    assert stdout.split()[-1] == "2", stdout


FULL_BATCHES_SETUP = """
import numpy as np
import tensorflow as tf
import keras

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras_icn

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
rng = np.random.default_rng(0)
images, labels = rng.random((129, 8, 8, 1), "float32"), rng.integers(0, 2, 129)
train = tf.data.Dataset.from_tensor_slices((images[:64], labels[:64])).batch(32)
validation = test = tf.data.Dataset.from_tensor_slices((images, labels))  # 128 + 1
with strategy.scope():
    network = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(32, 3),
                                keras.layers.Flatten(), keras.layers.Dense(2)])
    model = keras_icn.IntrospectiveClassifier(network, num_classes=2, seed=0,
                                              synthesis_batch_size=8, pool_batch_size=8,
                                              pool_capacity=64)
    model.compile(optimizer="adam")
"""

FULL_BATCHES_CHECK = """
accuracy = model.evaluate(test, return_dict=True, verbose=0)["accuracy"]
expected = np.mean(np.argmax(network.predict(images, verbose=0), -1) == labels)
print("accuracy", accuracy, "expected", expected)
"""


def test_the_full_batches_example_evaluates_each_example_once_on_two_replicas(tmp_path):
    code = code_block("docs/scaling.md", "## Empty replica batches")
    # oneDNN on, as where TensorFlow 2.21 fails on an empty replica batch (that failure
    # itself, with the MNIST CNN, is tests/test_distribute.py's)
    env = {**ENV, "TF_ENABLE_ONEDNN_OPTS": "1"}
    stdout = run_python(FULL_BATCHES_SETUP + code + FULL_BATCHES_CHECK, tmp_path, env)
    accuracy, expected = map(float, re.search(r"accuracy (\S+) expected (\S+)", stdout).groups())
    # Each of the 129 examples counts once, as on one device: the 127 filled rows (weight
    # 0) would pull the accuracy far off, a dropped example by about 1/129, and a mean of
    # the two replicas' accuracies (over 65 and 64 examples) by about 5e-4.
    assert abs(accuracy - expected) < 1e-6, stdout[-1000:]


def test_the_onednn_example_turns_tensorflows_onednn_operations_on(tmp_path):
    code = code_block("docs/training.md", "to get\n  the fast kernels")
    code = "\n".join(line[2:] for line in code.splitlines())  # the block sits in a list item
    env = {k: v for k, v in ENV.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    stdout = run_python(code + "\nprint(keras_icn.layers.ONEDNN)\n", tmp_path, env)
    # The x86 wheels carry oneDNN; elsewhere the setting may have nothing to turn on.
    assert stdout.split()[-1] == "True" or platform.machine() not in ("x86_64", "AMD64")


# Links: every relative link of README.md and docs/*.md names a file or folder that exists
# (relative to the page), and every #anchor on a Markdown page matches one of its headings.

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)\)")


def without_code(text):
    """`text` without fenced code blocks and inline code spans (no links live there)."""
    text = re.sub(r"^ *```.*?^ *```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "``", text)


def slug(heading):
    """GitHub's anchor for a heading: lowercase; punctuation but hyphens dropped (letters,
    digits and underscores stay); spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = "".join(c for c in text if c in "-_ " or unicodedata.category(c)[0] in "LNM")
    return text.replace(" ", "-")


def anchors(page):
    text = re.sub(r"^ *```.*?^ *```", "", page.read_text(), flags=re.S | re.M)
    seen, result = {}, set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#* *$", text, re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def test_slugs_follow_githubs_rule():
    assert slug("Your own backbone with `model.fit`") == "your-own-backbone-with-modelfit"
    assert slug("AMD EPYC (Zen 3, AVX2, no AVX-512), 2 cores") == \
        "amd-epyc-zen-3-avx2-no-avx-512-2-cores"
    assert slug("Long-tailed, N = 500, R = 100") == "long-tailed-n--500-r--100"
    assert slug("ResNet-32 on 32×32×3") == "resnet-32-on-32323"
    assert slug("Round 3, synthesis: p_0 and chain length") == \
        "round-3-synthesis-p_0-and-chain-length"


def test_every_relative_link_and_anchor_resolves():
    assert len(PAGES) > 5, "README.md and the docs pages"
    checked, broken = 0, []
    for page in PAGES:
        for target in LINK.findall(without_code(page.read_text())):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(REPO)}: {target}"
            checked += 1
            if not linked.exists():
                broken.append(f"{where} (no such file or folder)")
            elif anchor and linked.suffix != ".md":
                broken.append(f"{where} (an anchor on a page that is not Markdown)")
            elif anchor and anchor not in anchors(linked):
                broken.append(f"{where} (no such heading)")
    assert checked > 50, checked
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_docs_page_starts_with_a_title_and_what_it_covers():
    for page in PAGES[1:]:
        blocks = page.read_text().split("\n\n")
        assert blocks[0].startswith("# ") and "\n" not in blocks[0], page.name
        assert blocks[1][0] not in "#`|-!<", f"{page.name}: no paragraph after the title"
    assert {p.name for p in PAGES[1:]} >= {"README.md", "algorithm.md", "training.md",
                                           "data.md", "pool.md", "serving.md", "scaling.md",
                                           "evaluation.md", "performance.md", "changes.md"}

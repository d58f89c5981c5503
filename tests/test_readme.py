"""The README's commands and code are what users run first: keep them working."""

import os
import re
import subprocess
import sys

from conftest import REPO, tfds_data_dir

README = (REPO / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    command = re.search(r"Run the tests.*?```bash\n(.*?)\n```", README, re.S).group(1)
    assert "python -m pytest" in command
    assert command in (REPO / ".ci" / "run").read_text()


def test_the_custom_backbone_example_trains_and_synthesizes_the_requested_labels(tmp_path):
    code = re.search(r"## Your own backbone.*?```python\n(.*?)```", README, re.S).group(1)
    env = {**os.environ, "TFDS_DATA_DIR": tfds_data_dir(), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    logs = re.search(r"^\{.*\}$", result.stdout, re.M).group(0)
    for name in ("loss", "accuracy", "introspective_loss", "pseudo_negative_acceptance",
                 "pool_size"):
        assert f"'{name}'" in logs, logs
    asked, classified = re.search(r"asked for \[(.*?)\] classified as \[(.*?)\]",
                                  result.stdout, re.S).groups()
    asked, classified = asked.split(), classified.split()
    matches = sum(a == c for a, c in zip(asked, classified))
    assert len(asked) == 10 and matches >= 9, result.stdout[-500:]


def test_the_plain_tf_data_pool_reader_reads_shards(tmp_path):
    import numpy as np
    from keras_icn import pool_io

    entries = {"index": np.arange(5), "image": np.random.rand(5, 28, 28, 1).astype("float32"),
               "label": np.arange(5), "step": np.zeros(5), "epoch": np.zeros(5),
               "score": np.ones(5)}
    pool_io.write_shard(str(tmp_path), entries, "fresh")
    code = re.search(r"Plain `tf.data` reads it:\n\n```python\n(.*?)```", README, re.S).group(1)
    namespace = {"tf": __import__("tensorflow")}
    exec(code.replace("/tmp/w/pool", str(tmp_path)), namespace)
    records = list(namespace["pool"])
    assert [int(r["label"]) for r in records] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(records[2]["image"].numpy(), entries["image"][2])


def test_files_the_readme_links_to_exist():
    local = re.findall(r"\]\(([\w./-]+)(?:#[\w-]*)?\)", README)  # not URLs, not anchors
    assert local, "the README links to files of the repository"
    missing = [t for t in local if not (REPO / t).exists()]
    assert not missing, f"README links to missing files: {missing}"

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

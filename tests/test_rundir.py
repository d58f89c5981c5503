import dataclasses
import json

import pytest

from keras_icn import rundir
from keras_icn.config import Config


def started_run(path, **settings):
    """A workdir as a run leaves it after its first checkpoint."""
    run, config = rundir.RunDir(path), Config.tiny(**settings).resolve((28, 28, 1))
    run.start(config)
    (path / rundir.MODEL).write_bytes(b"a checkpoint")
    return run, config


def test_start_writes_the_config_and_resume_checks_name_the_changes(tmp_path):
    run, config = started_run(tmp_path)
    assert run.read_config() == config
    run.check_resumable(dataclasses.replace(config, epochs=5, data_dir="/elsewhere"))
    with pytest.raises(ValueError, match=r"other settings \(mode: 'icn' -> 'baseline', "
                                         r"step_size: 0.5 -> 0.2\).*--start_over"):
        run.start(dataclasses.replace(config, mode="baseline", step_size=0.2))
    rundir.RunDir(tmp_path / "elsewhere").check_resumable(config)  # nothing to resume


def test_a_scheduled_run_refuses_to_resume_with_other_epochs(tmp_path):
    run, config = started_run(tmp_path, lr_schedule="cosine")
    with pytest.raises(ValueError, match="epochs: 1 -> 2"):
        run.check_resumable(dataclasses.replace(config, epochs=2))


def test_start_over_discards_every_output_and_nothing_else(tmp_path):
    run, config = started_run(tmp_path)
    for name in (rundir.METRICS, rundir.SAMPLES, "notes.txt"):
        (tmp_path / name).write_text("x")
    for name in (rundir.POOL, rundir.TENSORBOARD_SAMPLES, rundir.SAMPLES_DIR, run.export(1)):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "file").write_text("x")
    run.start(dataclasses.replace(config, mode="baseline"), start_over=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [rundir.CONFIG, "notes.txt"]
    assert run.read_config().mode == "baseline"


def test_epoch_sample_grids_are_listed_in_epoch_order(tmp_path):
    run = rundir.RunDir(tmp_path)
    (tmp_path / rundir.SAMPLES_DIR).mkdir()
    for epoch in (10, 2, 1):
        (tmp_path / rundir.EPOCH_SAMPLES.format(epoch=epoch)).write_bytes(b"png")
    assert [p.rsplit("/", 1)[1] for p in run.epoch_sample_grids()] == [
        "epoch-001.png", "epoch-002.png", "epoch-010.png"]


def test_a_run_from_before_a_setting_existed_resumes_with_its_default(tmp_path):
    run, config = started_run(tmp_path)
    written = json.loads((tmp_path / rundir.CONFIG).read_text())
    del written["imbalance_ratio"]  # as an earlier version wrote it
    (tmp_path / rundir.CONFIG).write_text(json.dumps(written))
    run.check_resumable(config)
    with pytest.raises(ValueError, match="imbalance_ratio: 1.0 -> 3.0"):
        run.check_resumable(dataclasses.replace(config, examples_per_class=5, imbalance_ratio=3.0))


def test_a_run_from_before_the_recipe_settings_resumes_with_what_it_trained_with(tmp_path):
    run, config = started_run(tmp_path)  # grey recipe: momentum 0.9, no smoothing, ...
    written = json.loads((tmp_path / rundir.CONFIG).read_text())
    for name in ("momentum", "lr_warmup", "label_smoothing", "crop_padding", "test_time_flips",
                 "sample_every", "series_length"):
        del written[name]  # as the versions before them wrote it
    (tmp_path / rundir.CONFIG).write_text(json.dumps(written))
    run.check_resumable(config)
    assert run.read_config().momentum == 0.9 and run.read_config().crop_padding == 4
    run.check_resumable(dataclasses.replace(config, sample_every=3))  # draws, changes nothing
    with pytest.raises(ValueError, match="label_smoothing: 0.0 -> 0.2"):
        run.check_resumable(dataclasses.replace(config, label_smoothing=0.2))

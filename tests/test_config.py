import dataclasses

import pytest
from absl import flags

from keras_icn import config as config_lib
from keras_icn.config import Config


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="train_examples must be at least batch_size=128"):
        Config(train_examples=10, batch_size=128)
    with pytest.raises(ValueError, match="train_examples must be at least batch_size=128"):
        Config(train_examples=10).resolve((28, 28, 1))  # the recipe's batch size
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        Config(epochs=0)
    with pytest.raises(ValueError, match=r"optimizer must be one of \('adam', 'sgd'\). "
                                         "Received: optimizer='rmsprop'"):
        Config(optimizer="rmsprop")
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        Config(weight_decay=-1.0)


def test_override_parses_every_kind_of_setting():
    config = config_lib.override(Config(), [
        "mode=baseline", "epochs=3", "learning_rate=0.01", "augment=false", "optimizer=auto",
        "value_range=-1,1", "jit_compile=true", "stop_probability=0.9", "download=false",
        "train_examples=none", "data_dir=/data"])
    assert config == dataclasses.replace(
        Config(), mode="baseline", epochs=3, learning_rate=0.01, augment=False,
        value_range=(-1.0, 1.0), jit_compile=True, stop_probability=0.9, download=False,
        data_dir="/data")
    assert config_lib.parse_value("jit_compile", "auto") == "auto"


@pytest.mark.parametrize("item, message", [
    ("epochs=x", "epochs must be an integer. Received: epochs='x'"),
    ("augment=sometimes", "augment must be true or false. Received: augment='sometimes'"),
    ("optimizer=rmsprop", r"optimizer must be one of \('adam', 'sgd'\). Received: optimizer="),
    ("synthesis=magic", "synthesis must be one of"),
    ("value_range=1", "value_range must be low,high"),
    ("jit_compile=maybe", "jit_compile must be auto, true or false"),
    ("learning_rte=0.1", "Unknown setting 'learning_rte'; the settings are .*learning_rate"),
    ("epochs", "A setting is field=value. Received: 'epochs'"),
])
def test_override_names_a_bad_setting_and_what_would_be_right(item, message):
    with pytest.raises(ValueError, match=message):
        config_lib.override(Config(), [item])


def test_flags_are_generated_from_the_config_with_its_help():
    flag_values = flags.FlagValues()
    config_lib.define_flags(flag_values)
    fields = dataclasses.fields(Config)
    assert {f.name for f in fields} <= set(flag_values)
    for field in fields:
        assert flag_values[field.name].help.endswith(field.metadata["help"]), field.name
    flag_values(["train.py"])
    assert config_lib.from_flags(flag_values) == Config()  # the defaults are the config's
    flag_values(["train.py", "--epochs=3", "--nodownload", "--augment=true",
                 "--value_range=-1,1", "--learning_rate=0.01", "--optimizer=sgd", "--lr_schedule=auto",
                 "--train_examples=2048", "--jit_compile=false"])
    assert config_lib.from_flags(flag_values) == config_lib.override(Config(), [
        "epochs=3", "download=false", "augment=true", "value_range=-1,1", "learning_rate=0.01",
        "optimizer=sgd", "train_examples=2048", "jit_compile=false"])


def test_config_json_round_trips():
    config = Config(value_range=(-1.0, 1.0), augment=True, dataset="cifar10")
    assert config_lib.from_json(config_lib.to_json(config)) == config
    assert config_lib.to_json(config)["value_range"] == [-1.0, 1.0]


def test_samples_are_drawn_about_ten_times_a_run_unless_set():
    assert Config().resolve((28, 28, 1)).sample_every == 1  # grey: 10 epochs
    assert Config().resolve((100, 6)).sample_every == 6  # series: 60 epochs
    assert Config(epochs=25).resolve((28, 28, 1)).sample_every == 3
    assert Config(epochs=60, sample_every=1).resolve((100, 6)).sample_every == 1
    with pytest.raises(ValueError, match="sample_every must be >= 1. Received: sample_every=0"):
        Config(sample_every=0)


def test_the_recipe_follows_the_network_that_auto_resolves_to():
    assert config_lib.recipe_name((32, 32, 3)) == "fast"
    assert config_lib.recipe_name((32, 32, 3), "fast_cnn16") == "fast"
    assert config_lib.recipe_name((32, 32, 3), "resnet32") == "resnet"
    assert config_lib.recipe_name((8, 8, 3)) == "resnet"  # auto: too small for fast_cnn
    assert config_lib.recipe_name((28, 28, 1)) == "grey"
    assert Config().resolve((8, 8, 3)).batch_size == 128


def test_fast_cnn_synthesizes_in_p0s_metric_unless_set_and_older_runs_read_as_pixel():
    fast = Config().resolve((32, 32, 3))
    assert (fast.synthesis_metric, fast.synthesis_steps) == ("prior", 100)
    for shape, network in (((32, 32, 3), "resnet8"), ((28, 28, 1), "auto")):
        other = Config(network=network).resolve(shape)
        assert (other.synthesis_metric, other.synthesis_steps) == ("pixel", 20)
    chosen = Config(synthesis_metric="pixel", synthesis_steps=20).resolve((32, 32, 3))
    assert (chosen.synthesis_metric, chosen.synthesis_steps) == ("pixel", 20)
    # A config.json written before the setting existed: its runs synthesized in pixels.
    older = {k: v for k, v in config_lib.to_json(fast).items() if k != "synthesis_metric"}
    assert config_lib.from_json(older).synthesis_metric == "pixel"
    for bad in (lambda: config_lib.override(Config(), ["synthesis_metric=pca"]),
                lambda: Config(synthesis_metric="pca")):
        with pytest.raises(ValueError, match="synthesis_metric must be one of .*"
                                             "Received: synthesis_metric='pca'"):
            bad()


def test_one_known_class_resolves_synthesis_to_fresh():
    one = config_lib.resolve(Config(dataset="shuttle", known_classes=(0,)))
    assert one.synthesis == "fresh" and one.batch_size == 32  # the table recipe
    persistent = Config(synthesis="persistent").resolve((9,), num_classes=1)
    assert persistent.synthesis == "persistent"  # set explicitly: kept
    # Two or more classes leave it None (the model's "data"), as old config.json files have it.
    assert config_lib.resolve(Config(dataset="shuttle")).synthesis is None
    assert config_lib.from_json(config_lib.to_json(one)) == one


def test_one_known_class_refuses_data_starts_and_says_what_to_use():
    with pytest.raises(ValueError, match="synthesis=\"data\" needs at least 2 known classes.*"
                                         "Received: synthesis='data' with one known class.*"
                                         "Use synthesis=fresh"):
        config_lib.resolve(Config(dataset="shuttle", known_classes=(0,), synthesis="data"))
    with pytest.raises(ValueError, match="synthesis=\"mixed\" needs at least 2 known classes"):
        config_lib.resolve(Config(dataset="shuttle", known_classes=(0,), synthesis="mixed"))

"""TrainConfig: paper defaults, YAML/TOML files, unknown keys rejected, checks."""

import dataclasses

import pytest

from netvlad.train import TrainConfig, read_config_file
from netvlad.train.train_config import write_config


def test_defaults_are_the_papers():
    c = TrainConfig()
    assert (c.margin, c.pos_radius, c.neg_radius) == (0.1, 10.0, 25.0)
    assert (c.num_negatives, c.negative_samples, c.cache_refresh) == (10, 1000, 1000)
    assert (c.optimizer, c.lr, c.lr_step, c.lr_gamma, c.momentum, c.weight_decay, c.batch_tuples) == (
        "sgd", 1e-4, 5, 0.5, 0.9, 1e-3, 4)
    assert c.train_from is None  # the backbone registry's train_from: layers below conv5 frozen for VGG16
    assert c.cluster_config.num_descriptors == 50_000 and c.cluster_config.per_image == 100


def test_yaml_and_toml_files_round_trip(tmp_path):
    (tmp_path / "a.yaml").write_text("lr: 0.001\nsize: [128, 256]\nresize: fixed\nwhitening_dim: 256\n")
    (tmp_path / "a.toml").write_text('lr = 0.001\nsize = [128, 256]\nresize = "fixed"\nwhitening_dim = 256\n')
    from_yaml = TrainConfig.from_dict(read_config_file(tmp_path / "a.yaml"))
    from_toml = TrainConfig.from_dict(read_config_file(tmp_path / "a.toml"))
    assert from_yaml == from_toml
    assert from_yaml.size == (128, 256) and from_yaml.model_config.preprocessing.size == (128, 256)
    written = write_config(from_yaml, tmp_path / "resolved.yaml")
    assert TrainConfig.from_dict(read_config_file(written)) == from_yaml
    assert {f.name for f in dataclasses.fields(TrainConfig)} == set(read_config_file(written))


def test_bad_configs_fail_clearly(tmp_path):
    (tmp_path / "typo.yaml").write_text("learning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"typo.yaml: unknown training option\(s\) \['learning_rate'\]"):
        TrainConfig.from_dict(read_config_file(tmp_path / "typo.yaml"), source=str(tmp_path / "typo.yaml"))
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        read_config_file(tmp_path / "list.yaml")
    with pytest.raises(FileNotFoundError, match="no such config file"):
        read_config_file(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="pos_radius"):
        TrainConfig(pos_radius=30.0, neg_radius=25.0)
    with pytest.raises(ValueError, match="resize"):
        TrainConfig(resize="crop")


def test_the_nordland_recipe_file_loads_as_documented():
    """configs/nordland.yaml (the recipe docs/learning.md measures) is a valid config with the documented setup."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "configs" / "nordland.yaml"
    c = TrainConfig.from_dict(read_config_file(path), source=str(path))
    setup = (c.backbone, c.pretrained, c.resize, c.size, c.val_places)
    assert setup == ("mobilenet_v2", True, "fixed", (128, 256), 400)
    assert (c.epochs, c.epoch_queries, c.loss_normalization, c.alpha_average) == (2, None, "sum", "arithmetic")
    assert c.model_config.num_clusters == c.num_clusters and c.model_config.train_from is None  # conv5 trained
    assert (c.exclude_dark_below, c.exclude_duplicates_above) == (25, 0.97)  # tunnels and stops left out of training

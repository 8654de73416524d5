"""Typed configs: YAML round-trips, unknown keys and wrong types are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_are_the_openmoji_demo() -> None:
    cfg = load_config(None)
    assert cfg.data.source == "openmoji"
    assert cfg.text_encoder == "minilm" and cfg.image_encoder == "efficientnet-lite0"


def test_yaml_round_trip(tmp_path: Path) -> None:
    cfg = load_config({"anchors": {"count": 123, "strategy": "kmeans"}, "projector": {"topk": None}})
    cfg.save(tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == cfg and again.anchors.count == 123 and again.projector.topk is None


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("anchors:\n  count: 10\n  cuont: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*anchors\.cuont"):
        load_config(path)


def test_unknown_top_level_key() -> None:
    with pytest.raises(ConfigError, match="'encoder'"):
        load_config({"encoder": "x"})


@pytest.mark.parametrize(
    "data, key",
    [
        ({"anchors": {"count": "many"}}, "anchors.count"),
        ({"projector": {"center": "yes"}}, "projector.center"),
        ({"data": {"languages": "en"}}, "data.languages"),
        ({"batch_size": True}, "batch_size"),
    ],
)
def test_wrong_types_are_refused(data: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(data)


def test_int_is_accepted_for_float() -> None:
    assert load_config({"projector": {"power": 2}}).projector.power == 2.0


def test_overrides_are_type_checked() -> None:
    assert load_config(None, **{"anchors.count": 5}).anchors.count == 5
    with pytest.raises(ConfigError):
        load_config(None, **{"anchors.nope": 5})


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_shipped_configs_load(path: Path) -> None:
    from pipeline.indexing.build import check_config

    cfg = load_config(path)
    check_config(cfg)  # encoders (ensemble members too), languages and anchor strategy, with no model loaded


def test_openmoji_yaml_matches_the_embedded_default() -> None:
    assert load_config(CONFIGS / "openmoji.yaml") == load_config(None)


def test_a_next_line_character_survives_save_and_load(tmp_path: Path) -> None:
    """Found by Hypothesis (test_properties): PyYAML folded a raw U+0085 inside single quotes into a space."""
    cfg = load_config({"data": {"label_column": "a\x85b", "caption_columns": {"e\x85s": "x"}}, "eval": {"prompts": ["\x85"]}})
    cfg.save(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_relative_paths_are_read_from_the_config_files_folder(tmp_path: Path, monkeypatch, caplog) -> None:
    """A relative data.path resolved against the working directory, not the config file."""
    (tmp_path / "conf" / "imgs").mkdir(parents=True)
    cfg_file = tmp_path / "conf" / "x.yaml"
    cfg_file.write_text("data:\n  source: folder\n  path: imgs\n  captions: c.csv\nanchors:\n  path: nowhere.parquet\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(cfg_file)
    assert cfg.data.path == str(tmp_path / "conf" / "imgs")
    assert cfg.data.captions == "c.csv"  # relative to data.path, as documented
    assert cfg.anchors.path == "nowhere.parquet"  # found nowhere: left as written, for its own error later
    (tmp_path / "old").mkdir()
    cfg_file.write_text("data:\n  source: folder\n  path: old\n")
    with caplog.at_level("WARNING", logger="pipeline.config"):
        assert load_config(cfg_file).data.path == "old"  # the old reading still works, with a word
    assert "relative to the working directory" in caplog.text
    assert load_config({"data": {"path": "imgs"}}).data.path == "imgs"  # a dict has no file to be beside


def test_shipped_configs_find_their_files_from_anywhere(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Path(load_config(CONFIGS / "new-items.yaml").data.path) == (CONFIGS.parent / "docs" / "new-items").resolve()

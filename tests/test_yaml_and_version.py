"""The fast YAML path reads and writes what PyYAML's safe loader and dumper do, and the version
read off the metadata header is the one importlib.metadata reports."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from agen import yaml_text
from agen.version import agen_version

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "agen").rglob("*.yaml")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_yaml_loads_and_round_trips_as_with_the_safe_loader(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    data = yaml_text.load(text)
    assert data == yaml.safe_load(text)
    assert yaml_text.load(yaml_text.dump(data, sort_keys=False)) == data
    assert yaml.safe_load(yaml_text.dump(data)) == yaml.safe_load(yaml.safe_dump(data))


def test_the_fast_loader_stays_safe_and_raises_yamls_own_errors() -> None:
    with pytest.raises(yaml.YAMLError):
        yaml_text.load("!!python/object/apply:os.system ['true']")
    with pytest.raises(yaml.YAMLError):
        yaml_text.load("a: [1, 2\nb: 3")


def test_version_is_the_installed_distributions() -> None:
    assert agen_version() == version("agen")

"""Every stack file validates; Pulumi.yaml declares exactly the keys the settings read."""

from __future__ import annotations

import pytest
import yaml

from harness.program import ROOT, project_defaults, raw_settings
from infra.config_reference import reference
from infra.settings import PROJECT, Settings, parse_settings
from tests.conftest import STACKS


def test_the_three_environments_exist() -> None:
    assert set(STACKS) >= {"dev", "prod", "local"}


@pytest.mark.parametrize("stack", STACKS)
def test_stack_file_validates(stack: str) -> None:
    settings = parse_settings(raw_settings(stack), stack)
    assert settings.cluster.name


def test_project_declares_every_settings_key_with_type_and_description() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    declared = {k: v for k, v in project["config"].items() if ":" not in k}
    expected = {info.alias for info in Settings.model_fields.values()}
    assert set(declared) == expected
    for key, declaration in declared.items():
        assert declaration.get("type") in {"object", "array"}, key
        assert declaration.get("description"), key
        if declaration["type"] == "array":
            assert "items" in declaration, key


def test_project_defaults_are_valid_settings_defaults() -> None:
    """Defaults declared in Pulumi.yaml must mean the same as leaving the key out."""
    defaults = {
        k.removeprefix(f"{PROJECT}:"): v
        for k, v in project_defaults().items()
        if k.startswith(f"{PROJECT}:")
    }
    minimal = {
        "cluster": {"mode": "existing", "name": "x", "context": "c"},
        "storage": {
            "mode": "storageClass",
            "storageClassName": "rwx",
            "blockStorageClassName": "rwo",
        },
        # CloudWatch, the default sink, needs mode `eks`.
        "logging": {"destination": "stdout"},
    }
    with_defaults = parse_settings({**defaults, **minimal}, "test")
    without = parse_settings(minimal, "test")
    assert with_defaults == without


def test_stack_tags_are_declared() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["config"]["pulumi:tags"]["value"]["project"] == "ml-platform"
    assert project["runtime"]["options"]["toolchain"] == "uv"


def test_configuration_reference_is_current() -> None:
    """docs/configuration.md is generated; regenerate it when the settings change."""
    current = (ROOT / "docs" / "configuration.md").read_text()
    assert current == reference(), "run: python -m infra.config_reference > docs/configuration.md"

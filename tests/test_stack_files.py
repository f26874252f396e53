"""Every stack file validates; Pulumi.yaml declares exactly the keys the settings read."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from harness.cli_config import (
    StackConfigError,
    check_stack_config,
    config_value_matches,
    required_keys,
)
from harness.program import (
    ROOT,
    merged_config,
    project_declarations,
    project_defaults,
    raw_settings,
    stack_config,
)
from infra.config_reference import reference
from infra.settings import PROJECT, Settings, parse_settings
from tests.conftest import STACKS
from tests.pulumi_pin import pulumi_cli
from tests.upstream_facts import facts


def test_the_three_environments_exist() -> None:
    assert set(STACKS) >= {"dev", "prod", "local"}


@pytest.mark.parametrize("stack", STACKS)
def test_stack_file_validates(stack: str) -> None:
    settings = parse_settings(raw_settings(stack), stack)
    assert settings.cluster.name


@pytest.mark.parametrize("stack", STACKS)
def test_the_cli_accepts_the_stack_config(stack: str) -> None:
    """`pulumi preview` / `up` refuse to start on a missing required key or a mistyped value."""
    values = stack_config(stack)
    merged = {**project_defaults(), **values}
    check_stack_config(PROJECT, stack, project_declarations(), values, merged)


def test_only_the_cluster_is_required() -> None:
    """A key without a default is required by the CLI in every stack, whatever its mode; only
    `cluster` is needed by every stack (an existing cluster has no `aws`, for one)."""
    assert required_keys(PROJECT, project_declarations()) == ["cluster"]


def test_a_missing_required_key_stops_the_cli() -> None:
    config = stack_config("local")
    del config[f"{PROJECT}:cluster"]
    expected = facts("pulumi-stack-config", pinned=pulumi_cli())["missing_key_error"]
    with pytest.raises(StackConfigError) as caught:
        merged_config("local", config)
    assert str(caught.value).startswith(expected.format(stack="local", key="cluster"))
    assert f"{PROJECT}:cluster" in str(caught.value)


@pytest.mark.parametrize("verdict", ["accepts", "refuses"])
def test_config_types_are_checked_as_the_cli_checks_them(verdict: str) -> None:
    cases: dict[str, list[Any]] = facts("pulumi-stack-config", pinned=pulumi_cli())[verdict]
    for full_type, values in cases.items():
        items = {"type": full_type[6:-1]} if full_type.startswith("array<") else None
        type_ = "array" if items else full_type
        for value in values:
            from_stack = value if isinstance(value, dict | list) else str(value).lower()
            assert config_value_matches(type_, items, from_stack) is (verdict == "accepts"), value


def test_a_mistyped_value_stops_the_cli() -> None:
    config = stack_config("dev")
    config[f"{PROJECT}:cluster"] = "eks"
    expected = facts("pulumi-stack-config", pinned=pulumi_cli())["type_error"]
    with pytest.raises(StackConfigError) as caught:
        merged_config("dev", config)
    assert str(caught.value).startswith(expected.format(stack="dev", key="cluster", type="object"))


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

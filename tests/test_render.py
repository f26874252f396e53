"""`make render`: both files for every stack, deterministic, and strictly schema-valid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import render
from harness.program import ProgramError, stack_names, whole_numbers
from harness.schema import is_built_in, validation_errors
from infra.settings import SettingsError
from tests.conftest import stack_run

STACKS = stack_names()
RESOURCE_KEYS = {"type", "name", "urn", "parent", "dependencies", "provider", "inputs"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build")
    assert render.main(["--all", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("stack", STACKS)
def test_render_writes_both_files(rendered: Path, stack: str) -> None:
    documents = list(yaml.safe_load_all((rendered / stack / "manifests.yaml").read_text()))
    assert documents, "no Kubernetes objects rendered"
    for obj in documents:
        assert {"apiVersion", "kind", "metadata"} <= set(obj)
        assert obj["metadata"]["name"]
    resources = json.loads((rendered / stack / "resources.json").read_text())
    assert resources
    for resource in resources:
        assert set(resource) == RESOURCE_KEYS


@pytest.mark.parametrize("stack", STACKS)
def test_render_is_deterministic(rendered: Path, tmp_path: Path, stack: str) -> None:
    assert render.main([stack, "--out", str(tmp_path)]) == 0
    for name in ("manifests.yaml", "resources.json"):
        assert (tmp_path / stack / name).read_bytes() == (rendered / stack / name).read_bytes()


@pytest.mark.parametrize("stack", STACKS)
def test_manifests_validate_strictly(rendered: Path, stack: str) -> None:
    documents = list(yaml.safe_load_all((rendered / stack / "manifests.yaml").read_text()))
    version = str(stack_run(stack).outputs["kubernetesVersion"])
    assert [obj for obj in documents if is_built_in(obj)], "nothing to validate"
    assert render.schema_problems(documents, version) == []


def _walk(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _walk(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _walk(v)]
    return [value]


@pytest.mark.parametrize("stack", STACKS)
def test_whole_numbers_are_integers(rendered: Path, stack: str) -> None:
    leaves = _walk(list(yaml.safe_load_all((rendered / stack / "manifests.yaml").read_text())))
    leaves += _walk(json.loads((rendered / stack / "resources.json").read_text()))
    assert not [v for v in leaves if isinstance(v, float) and v.is_integer()]


def test_engine_floats_become_integers_where_whole() -> None:
    """The engine turns every number into a float; the render turns whole ones back."""
    assert whole_numbers({"replicas": 2.0, "ratio": 0.5, "ports": [8500.0], "on": True}) == {
        "replicas": 2,
        "ratio": 0.5,
        "ports": [8500],
        "on": True,
    }
    [group] = [r for r in stack_run("dev").resources if r.type == "aws:eks/nodeGroup:NodeGroup"][:1]
    assert isinstance(group.as_json()["inputs"]["scalingConfig"]["maxSize"], int)


def test_validator_reports_every_error_of_an_object() -> None:
    """A control: the strict validator catches what the tests above rely on it to catch."""
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x", "labelz": {}},
        "spec": {
            "replicas": "two",
            "template": {
                "spec": {"containers": [{"name": "c", "ports": [{"containerPort": "http"}]}]}
            },
        },
    }
    errors = validation_errors(broken, "1.35")
    assert len(errors) == 4, errors
    assert any("labelz" in e for e in errors)
    assert any(e.startswith("spec.replicas") for e in errors)
    assert any("'selector' is a required property" in e for e in errors)
    assert any("containerPort" in e for e in errors)


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [("policy/v1beta1", "PodSecurityPolicy"), ("batch/v1beta1", "CronJob"), ("v1", "Nmespace")],
)
def test_validator_rejects_apis_the_version_does_not_serve(api_version: str, kind: str) -> None:
    errors = validation_errors(
        {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}}, "1.35"
    )
    assert errors
    assert "does not exist in Kubernetes 1.35" in errors[0]


def test_render_refuses_unknown_stacks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        render.main(["staging"])
    assert exited.value.code == 2
    assert "unknown: staging" in capsys.readouterr().err


def test_render_fails_loudly_and_writes_nothing_when_the_program_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(stack: str, config: object = None) -> None:
        raise ProgramError(stack, SettingsError("Pulumi.dev.yaml: invalid configuration"), [])

    monkeypatch.setattr(render, "run_program", failing)
    assert render.main(["dev", "--out", str(tmp_path)]) == 1
    assert "invalid configuration" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*"))


def test_render_reports_schema_errors_with_a_failing_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = render.kubernetes_objects

    def with_a_typo(run: Any) -> list[dict[str, Any]]:
        objects = real(run)
        objects[0]["metadata"]["lables"] = {"a": "b"}
        return objects

    monkeypatch.setattr(render, "kubernetes_objects", with_a_typo)
    assert render.main(["local", "--out", str(tmp_path)]) == 1
    assert "'lables' was unexpected" in capsys.readouterr().out

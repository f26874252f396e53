"""The whole program under mocks, for every stack: structure every component must follow."""

from __future__ import annotations

import re

from harness.program import ProgramRun, run_program

COMPONENT_TYPE = re.compile(r"^ml-platform:[a-z]+:[A-Z][A-Za-z]+$")


def test_program_registers_resources_and_exports(run: ProgramRun) -> None:
    assert run.resources
    assert {"clusterName", "kubernetesVersion", "namespaces"} <= set(run.outputs)


# Upstream bundles installed as opaque remote components (their inputs are tested instead).
REMOTE_COMPONENTS = {"kubernetes:kustomize/v2:Directory"}


def test_components_use_the_project_type_token(run: ProgramRun) -> None:
    components = [r for r in run.resources if not r.custom and r.type not in REMOTE_COMPONENTS]
    assert components
    for component in components:
        assert COMPONENT_TYPE.match(component.type), component.type


def test_every_resource_lives_in_a_component(run: ProgramRun) -> None:
    """`parent=self` everywhere: only components and provider objects sit at the stack root."""
    components = {r.urn: r for r in run.resources if not r.custom}
    for resource in run.resources:
        if resource.type.startswith("pulumi:providers:") or not resource.custom:
            continue
        assert resource.parent in components, f"{resource.type} {resource.name} has no component"


def test_child_names_derive_from_their_component(run: ProgramRun) -> None:
    by_urn = {r.urn: r for r in run.resources}
    for resource in run.resources:
        parent = by_urn.get(resource.parent or "")
        if parent is None:
            continue
        assert resource.name.startswith(parent.name), (resource.name, parent.name)


def test_resource_names_are_unique_per_type(run: ProgramRun) -> None:
    seen = [(r.type, r.name) for r in run.resources]
    assert len(seen) == len(set(seen))


def test_kubernetes_resources_use_the_clusters_providers(run: ProgramRun) -> None:
    """The cluster's provider for our objects; its adopting twin only for upstream bundles."""
    providers = {r.name: r.urn for r in run.resources if r.type == "pulumi:providers:kubernetes"}
    [main] = [urn for name, urn in providers.items() if not name.endswith("-installs")]
    [installer] = [urn for name, urn in providers.items() if name.endswith("-installs")]
    installs = {r.urn for r in run.resources if r.type == "ml-platform:kubeflow:KubeflowInstalls"}
    kubernetes = [r for r in run.resources if r.type.startswith("kubernetes:")]
    assert kubernetes
    for resource in kubernetes:
        expected = installer if resource.parent in installs else main
        assert resource.provider == expected, resource.urn


def test_aws_resources_use_the_explicit_aws_provider(run: ProgramRun) -> None:
    providers = [r.urn for r in run.resources if r.type == "pulumi:providers:aws"]
    aws_resources = [r for r in run.resources if r.type.startswith("aws:")]
    if run.stack == "local":
        assert providers == []
        assert aws_resources == []
        return
    assert len(providers) == 1
    assert aws_resources
    for resource in aws_resources:
        assert resource.provider == providers[0], resource.urn


def test_preview_mode_runs_with_unknown_values(run: ProgramRun) -> None:
    """`pulumi preview` leaves provider outputs unknown; the program must still register all."""
    preview = run_program(run.stack, preview=True)
    assert sorted(r.urn for r in preview.resources) == sorted(r.urn for r in run.resources)

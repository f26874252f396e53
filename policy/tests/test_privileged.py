"""no-privileged-pods-outside-node-agents, with its nodeAgentNamespaces config."""

from __future__ import annotations

from typing import Any

import pytest

from ml_platform_policy.pods import DEFAULT_NODE_AGENT_NAMESPACES, privileged_pods
from tests.helpers import (
    DEPLOYMENT,
    POD,
    TFJOB,
    UNKNOWN,
    check,
    container,
    default_config,
    deployment,
    pod,
    pod_spec,
    tfjob,
)

DAEMONSET = "kubernetes:apps/v1:DaemonSet"


def daemonset(spec: dict[str, Any], namespace: str | None) -> dict[str, Any]:
    inputs = deployment(spec, namespace)
    inputs["kind"] = "DaemonSet"
    return inputs


def test_default_namespaces_are_the_platforms_node_agent_namespaces() -> None:
    assert default_config(privileged_pods) == {
        "nodeAgentNamespaces": ["kube-system", "gpu-system", "logging", "monitoring"]
    }
    assert set(DEFAULT_NODE_AGENT_NAMESPACES) == {
        "kube-system",
        "gpu-system",
        "logging",
        "monitoring",
    }


@pytest.mark.parametrize("namespace", DEFAULT_NODE_AGENT_NAMESPACES)
@pytest.mark.parametrize("config", [None, "defaults"])
def test_node_agents_may_be_privileged(namespace: str, config: str | None) -> None:
    spec = pod_spec(container("agent", privileged=True), hostNetwork=True, hostPID=True)
    cfg = default_config(privileged_pods) if config else None
    assert check(privileged_pods, DAEMONSET, daemonset(spec, namespace), config=cfg) == []


def test_a_privileged_container_in_a_team_namespace_is_a_violation() -> None:
    spec = pod_spec(container("app", privileged=True))
    [message] = check(privileged_pods, DEPLOYMENT, deployment(spec, "research"))
    assert "container 'app'" in message
    assert "securityContext.privileged: true" in message
    assert "namespace 'research'" in message


@pytest.mark.parametrize("host_field", ["hostNetwork", "hostPID", "hostIPC"])
def test_host_namespaces_outside_node_agents_are_violations(host_field: str) -> None:
    [message] = check(privileged_pods, POD, pod(pod_spec(**{host_field: True}), "serving"))
    assert f"spec.{host_field}: true" in message


def test_a_pod_without_a_namespace_is_in_default() -> None:
    [message] = check(privileged_pods, POD, pod(pod_spec(hostNetwork=True), namespace=None))
    assert "namespace 'default'" in message


def test_privileged_init_and_ephemeral_containers_are_violations() -> None:
    spec = pod_spec(
        container("app"),
        initContainers=[container("setup", privileged=True)],
        ephemeralContainers=[container("debug", privileged=True)],
    )
    messages = check(privileged_pods, POD, pod(spec))
    assert len(messages) == 2
    assert any("spec.initContainers[0]" in m for m in messages)
    assert any("spec.ephemeralContainers[0]" in m for m in messages)


def test_unprivileged_pods_pass_everywhere() -> None:
    spec = pod_spec(container(privileged=False), hostNetwork=False, hostPID=False, hostIPC=False)
    assert check(privileged_pods, POD, pod(spec, "research")) == []


def test_tfjob_replicas_are_checked() -> None:
    inputs = tfjob({"Worker": pod_spec(container("tensorflow", privileged=True))})
    [message] = check(privileged_pods, TFJOB, inputs)
    assert "spec.tfReplicaSpecs.Worker.template.spec.containers[0]" in message


def test_config_overrides_the_namespaces() -> None:
    spec = pod_spec(container("agent", privileged=True))
    config = {"nodeAgentNamespaces": ["research", "node-agents"]}
    assert check(privileged_pods, DAEMONSET, daemonset(spec, "research"), config=config) == []
    assert check(privileged_pods, DAEMONSET, daemonset(spec, "node-agents"), config=config) == []
    [message] = check(privileged_pods, DAEMONSET, daemonset(spec, "kube-system"), config=config)
    assert "(node-agents, research)" in message


def test_an_empty_namespace_list_allows_no_privilege_anywhere() -> None:
    spec = pod_spec(container("agent", privileged=True))
    config: dict[str, Any] = {"nodeAgentNamespaces": []}
    assert check(privileged_pods, DAEMONSET, daemonset(spec, "kube-system"), config=config)


def test_unknown_namespace_or_flags_are_left_for_the_update() -> None:
    inputs = pod(pod_spec(container(privileged=True), hostNetwork=UNKNOWN), "research")
    inputs["metadata"]["namespace"] = UNKNOWN
    assert check(privileged_pods, POD, inputs) == []
    inputs = pod(pod_spec(hostNetwork=UNKNOWN, containers=UNKNOWN), "research")
    assert check(privileged_pods, POD, inputs) == []

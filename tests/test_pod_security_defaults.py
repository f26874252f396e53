"""Every pod the platform authors (not the upstream charts and kustomizations it installs) meets
the security defaults: non-root, RuntimeDefault seccomp, no privilege escalation, no capabilities,
requests and a memory limit, no host access, images pinned to a tag, and no
service-account token unless the pod calls the API."""

from __future__ import annotations

from typing import Any

import pytest

from harness.render import kubernetes_objects
from infra.schedulability import pod_templates
from tests.conftest import STACKS, stack_run

# Pods that talk to the Kubernetes API and so need their service-account token.
NEEDS_API_TOKEN = {"Deployment kube-system/gpu-binpack-scheduler"}


def _violations(where: str, spec: dict[str, Any]) -> list[str]:
    problems = []
    pod = spec.get("securityContext") or {}
    if spec.get("automountServiceAccountToken") is not False and where not in NEEDS_API_TOKEN:
        problems.append(f"{where}: mounts a service-account token it does not need")
    if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
        problems.append(f"{where}: uses the host's namespaces")
    for volume in spec.get("volumes") or []:
        if "hostPath" in volume:
            problems.append(f"{where}: mounts hostPath {volume['hostPath'].get('path')}")
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        problems += _container_violations(f"{where} container {container['name']}", container, pod)
    return problems


def _container_violations(name: str, container: dict[str, Any], pod: dict[str, Any]) -> list[str]:
    problems = []
    context = container.get("securityContext") or {}
    if not (context.get("runAsNonRoot") or pod.get("runAsNonRoot")):
        problems.append(f"{name}: may run as root")
    seccomp = (context.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
    if seccomp != "RuntimeDefault":
        problems.append(f"{name}: seccomp {seccomp}")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{name}: privilege escalation not disabled")
    if (context.get("capabilities") or {}).get("drop") != ["ALL"]:
        problems.append(f"{name}: capabilities not dropped")
    if context.get("privileged"):
        problems.append(f"{name}: privileged")
    resources = container.get("resources") or {}
    if not (resources.get("requests") or {}).get("cpu"):
        problems.append(f"{name}: no cpu request")
    if not (resources.get("limits") or {}).get("memory"):
        problems.append(f"{name}: no memory limit")
    image = str(container.get("image", ""))
    tag = image.split("@", maxsplit=1)[0].rsplit("/", 1)[-1].partition(":")[2]
    if "@sha256:" not in image and (not tag or tag == "latest"):
        problems.append(f"{name}: image {image!r} is not pinned")
    return problems


@pytest.mark.parametrize("stack", STACKS)
def test_every_authored_pod_meets_the_security_defaults(stack: str) -> None:
    objects = kubernetes_objects(stack_run(stack))
    templates = list(pod_templates(objects))
    assert templates, "no pod templates rendered"
    problems = [p for t in templates for p in _violations(t.workload, t.spec)]
    assert problems == []


def test_the_check_catches_an_unsafe_pod() -> None:
    unsafe = {
        "hostNetwork": True,
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
        "containers": [{"name": "app", "image": "python:latest", "securityContext": {}}],
    }
    problems = _violations("Pod x", unsafe)
    expected = (
        "service-account token", "host's namespaces", "hostPath /", "may run as root", "seccomp",
        "escalation", "capabilities", "cpu request", "memory limit", "not pinned",
    )  # fmt: skip
    for fragment in expected:
        assert any(fragment in p for p in problems), fragment

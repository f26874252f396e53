"""Platform and team namespaces, each with the Pod Security Standard its purpose allows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from infra import katib, labels, names, versions
from infra.settings import Settings

PodSecurityLevel = Literal["privileged", "baseline", "restricted"]

_PSA = "pod-security.kubernetes.io"


@dataclass(frozen=True)
class NamespaceSpec:
    """One namespace: its name, purpose and the Pod Security level it enforces."""

    name: str
    purpose: str
    enforce: PodSecurityLevel
    reason: str
    team: str | None = None
    extra_labels: dict[str, str] = field(default_factory=dict)

    @property
    def authored(self) -> bool:
        """Whether only this program and the teams put pods here (no upstream installs)."""
        return self.purpose in ("platform", "serving", "team")


def pod_security_labels(level: PodSecurityLevel, version: str) -> dict[str, str]:
    """PSA labels for a namespace enforcing `level`, pinned to `version`.

    Restricted and baseline namespaces also warn and audit against `restricted`, so the gap to
    the strictest level stays visible.  Privileged namespaces (node agents) audit against
    `baseline` but do not warn, since every apply of a node agent would repeat the same warning.
    """
    warn: PodSecurityLevel = "privileged" if level == "privileged" else "restricted"
    audit: PodSecurityLevel = "baseline" if level == "privileged" else "restricted"
    result: dict[str, str] = {}
    for mode, mode_level in (("enforce", level), ("audit", audit), ("warn", warn)):
        result[f"{_PSA}/{mode}"] = mode_level
        result[f"{_PSA}/{mode}-version"] = version
    return result


def namespace_specs(settings: Settings) -> list[NamespaceSpec]:
    """The namespaces a stack needs, derived from which components it enables."""
    specs = [
        NamespaceSpec(
            names.PLATFORM,
            "platform",
            "restricted",
            "platform jobs and controllers run as non-root with no host access",
        )
    ]
    if settings.node_pools.gpu:
        specs.append(
            NamespaceSpec(
                names.GPU,
                "gpu",
                "privileged",
                "the NVIDIA device plugin and DCGM exporter mount host paths and devices",
            )
        )
    kubeflow = settings.kubeflow
    if kubeflow.notebooks.enabled:
        specs.append(
            NamespaceSpec(
                names.NOTEBOOK_CONTROLLER,
                "kubeflow",
                "baseline",
                "the upstream notebook controller is not checked against restricted",
            )
        )
    if kubeflow.training_operator.enabled or kubeflow.pipelines.enabled or kubeflow.katib.enabled:
        specs.append(
            NamespaceSpec(
                names.KUBEFLOW,
                "kubeflow",
                "baseline",
                "upstream Kubeflow controllers and the Pipelines store do not all meet restricted",
                # Not labelled for Katib's pod mutator (infra/katib.py): Katib's own pods, and
                # every other pod here, must start while Katib is down.
            )
        )
    if settings.serving.enabled:
        specs.append(
            NamespaceSpec(
                names.SERVING, "serving", "restricted", "model servers run as non-root, read-only"
            )
        )
    if settings.monitoring.enabled:
        specs.append(
            NamespaceSpec(
                names.MONITORING,
                "monitoring",
                "privileged",
                "node-exporter reads host namespaces and paths",
            )
        )
    if settings.logging.enabled:
        specs.append(
            NamespaceSpec(
                names.LOGGING,
                "logging",
                "privileged",
                "Fluent Bit tails container logs on each node",
            )
        )
    for team in settings.teams:
        reason = team.pod_security_reason or "team workloads run as non-root"
        specs.append(
            NamespaceSpec(
                team.name,
                "team",
                team.pod_security,
                reason,
                team=team.name,
                # Katib injects its metrics collector into trial pods only in labelled namespaces.
                extra_labels=dict(katib.INJECTION_LABEL) if kubeflow.katib.enabled else {},
            )
        )
    return specs


class PlatformNamespaces(pulumi.ComponentResource):
    """Creates the platform's namespaces; other components look them up by name here."""

    namespaces: dict[str, k8s.core.v1.Namespace]

    def __init__(
        self,
        name: str,
        specs: list[NamespaceSpec],
        kubernetes_version: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:namespaces:PlatformNamespaces", name, None, opts)
        psa_version = versions.pod_security_version(kubernetes_version)
        self.namespaces = {}
        for spec in specs:
            ns_labels = {
                **labels.common(spec.purpose),
                **pod_security_labels(spec.enforce, psa_version),
            }
            if spec.team:
                ns_labels[labels.TEAM] = spec.team
            ns_labels.update(spec.extra_labels)
            self.namespaces[spec.name] = k8s.core.v1.Namespace(
                f"{name}-{spec.name}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=spec.name,
                    labels=ns_labels,
                    annotations={labels.POD_SECURITY_REASON: spec.reason},
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            if spec.authored:
                # A pod that names no account runs as `default`: give it no API token.  Apply
                # creates the account if the namespace's controller has not yet (it then leaves it).
                k8s.core.v1.ServiceAccountPatch(
                    f"{name}-{spec.name}-default-account",
                    metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                        name="default",
                        namespace=spec.name,
                        annotations={"pulumi.com/patchForce": "true"},
                    ),
                    automount_service_account_token=False,
                    opts=pulumi.ResourceOptions(
                        parent=self, depends_on=[self.namespaces[spec.name]]
                    ),
                )
        self.register_outputs({"names": sorted(self.namespaces)})

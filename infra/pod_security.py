"""Security contexts for every pod the platform authors: what Pod Security `restricted` demands.

Defined once as API objects (camelCase dicts, as custom resources such as TFJob embed them) and
converted for the typed pulumi_kubernetes classes.
"""

from __future__ import annotations

from typing import Any

import pulumi_kubernetes as k8s


def restricted_pod(uid: int, gid: int | None = None) -> dict[str, Any]:
    """Non-root as `uid` and group `gid` (default: `uid`), with the runtime's default seccomp
    profile.  `restricted` checks runAsNonRoot and runAsUser only, never the group
    (kubernetes/pod-security-admission@v0.35.6:policy/check_runAsNonRoot.go, check_runAsUser.go),
    so group 0 is allowed where an image needs it."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid if gid is None else gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_container(read_only_root: bool = True) -> dict[str, Any]:
    """No privilege escalation, no capabilities, and (by default) a read-only root file system."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "capabilities": {"drop": ["ALL"]},
    }


def restricted_pod_args(uid: int) -> k8s.core.v1.PodSecurityContextArgs:
    context = restricted_pod(uid)
    return k8s.core.v1.PodSecurityContextArgs(
        run_as_non_root=context["runAsNonRoot"],
        run_as_user=context["runAsUser"],
        run_as_group=context["runAsGroup"],
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type=context["seccompProfile"]["type"]),
    )


def restricted_container_args(read_only_root: bool = True) -> k8s.core.v1.SecurityContextArgs:
    context = restricted_container(read_only_root)
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=context["allowPrivilegeEscalation"],
        read_only_root_filesystem=context["readOnlyRootFilesystem"],
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=context["capabilities"]["drop"]),
    )

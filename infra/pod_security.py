"""Security contexts for every pod the platform authors: what Pod Security `restricted` demands."""

from __future__ import annotations

import pulumi_kubernetes as k8s


def restricted_pod(uid: int) -> k8s.core.v1.PodSecurityContextArgs:
    """Non-root as `uid`/`uid`, with the runtime's default seccomp profile."""
    return k8s.core.v1.PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=uid,
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def restricted_container(read_only_root: bool = True) -> k8s.core.v1.SecurityContextArgs:
    """No privilege escalation, no capabilities, and (by default) a read-only root file system."""
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        read_only_root_filesystem=read_only_root,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
    )

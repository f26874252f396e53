"""Label and annotation keys the platform owns, all under one prefix."""

from __future__ import annotations

PREFIX = "ml-platform.io"

PART_OF = "app.kubernetes.io/part-of"
MANAGED_BY = "app.kubernetes.io/managed-by"
PURPOSE = f"{PREFIX}/purpose"
TEAM = f"{PREFIX}/team"
POD_SECURITY_REASON = f"{PREFIX}/pod-security-reason"


def common(purpose: str) -> dict[str, str]:
    """Labels every object the platform authors carries."""
    return {PART_OF: "ml-platform", MANAGED_BY: "pulumi", PURPOSE: purpose}

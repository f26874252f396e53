"""Where the EFS CSI driver puts dynamically provisioned workspaces, and its path limit."""

from __future__ import annotations

WORKSPACE_BASE = "/workspaces"
# The driver appends "-<36-character uuid>" to each directory and refuses paths over 100 chars.
PATH_LIMIT = 100
UNIQUE_SUFFIX = len("-") + 36


def workspace_path_length(namespace: str, claim: str) -> int:
    """Length of the directory the driver creates for `claim` in `namespace`."""
    return len(f"{WORKSPACE_BASE}/{namespace}/{claim}") + UNIQUE_SUFFIX

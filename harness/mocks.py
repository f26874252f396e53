"""Pulumi mocks with realistic outputs for every resource type and invoke the program uses.

Under mocks no provider runs: nothing is auto-named and no cloud computes ids, ARNs or endpoints.
These mocks fill them in deterministically (derived from the resource name), so the program sees
what a real deployment would hand it and the render is stable from run to run.  A resource type
or invoke without a mock here is an error, not a silent `{}`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pulumi

ACCOUNT_ID = "123456789012"
PARTITION = "aws"


class UnmockedCallError(RuntimeError):
    """The program used a resource type or invoke the harness has no mock for."""


def short_hash(*parts: str, length: int = 17) -> str:
    """A stable hex digest of `parts`, sized like AWS resource id suffixes."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


State = dict[str, Any]
ResourceHandler = Callable[[pulumi.runtime.MockResourceArgs, State], tuple[str, State]]


def _kubernetes_object(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
    metadata = dict(state.get("metadata") or {})
    # The Kubernetes provider auto-names objects without metadata.name as <name>-<8 random chars>.
    metadata.setdefault("name", f"{args.name}-{short_hash(args.name, length=8)}")
    metadata.setdefault("uid", _uuid(args.name))
    state["metadata"] = metadata
    namespace = metadata.get("namespace")
    resource_id = f"{namespace}/{metadata['name']}" if namespace else metadata["name"]
    return resource_id, state


def _provider(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
    return _uuid(args.name), state


def _uuid(name: str) -> str:
    digest = short_hash("uid", name, length=32)
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"


# Exact resource types with their own output shapes.  Kubernetes objects and providers share
# handlers (matched by prefix below).
RESOURCE_HANDLERS: dict[str, ResourceHandler] = {}


def _handler_for(args: pulumi.runtime.MockResourceArgs) -> ResourceHandler:
    if args.typ in RESOURCE_HANDLERS:
        return RESOURCE_HANDLERS[args.typ]
    if args.typ.startswith("pulumi:providers:"):
        return _provider
    if args.typ.startswith("kubernetes:") and args.custom:
        return _kubernetes_object
    raise UnmockedCallError(
        f"no mock outputs for resource type {args.typ!r} ({args.name}); add a handler to "
        "harness/mocks.py with the outputs the real provider returns"
    )


INVOKES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "aws:index/getCallerIdentity:getCallerIdentity": lambda _: {
        "accountId": ACCOUNT_ID,
        "arn": f"arn:{PARTITION}:iam::{ACCOUNT_ID}:role/ci-deployer",
        "userId": "AROAEXAMPLEID:ci",
        "id": ACCOUNT_ID,
    },
    "aws:index/getPartition:getPartition": lambda _: {
        "partition": PARTITION,
        "dnsSuffix": "amazonaws.com",
        "reverseDnsPrefix": "com.amazonaws",
        "id": PARTITION,
    },
}


class PlatformMocks(pulumi.runtime.Mocks):
    """Answers resource registrations and invokes the way AWS and Kubernetes would."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, State]:
        state: State = dict(args.inputs)
        if not args.custom:
            return None, state  # components have no id or provider-computed state
        return _handler_for(args)(args, state)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        handler = INVOKES.get(args.token)
        if handler is None:
            raise UnmockedCallError(
                f"no mock for invoke {args.token!r}; add it to harness/mocks.py INVOKES with "
                "camelCase keys, as the provider returns them"
            )
        return handler(dict(args.args)), None

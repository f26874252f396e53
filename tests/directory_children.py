"""Upstream objects as a kustomize Directory registers them: through the Directory's transforms.

Under mocks a remote component registers no children, so its transforms never run; these
helpers run them the way the engine does on each child.  The Directory registers every rendered
object with the object itself as its inputs, named `<directory>:<namespace>/<name>`
(pulumi/pulumi-kubernetes@94977969:provider/pkg/provider/yaml/v2/yaml.go), and the engine hands
each transform the previous one's result.  The SDK calls a transform on its event loop and
serializes what it returns, awaiting every Output in it (pulumi/runtime/_callbacks.py,
`register_transform`), so the next transform and the provider see plain values.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
from typing import Any

import pulumi

from harness.program import RegisteredResource


def type_token(obj: dict[str, Any]) -> str:
    """The Kubernetes provider's type token of an object (`kubernetes:core/v1:ConfigMap`)."""
    group, _, version = obj["apiVersion"].rpartition("/")
    return f"kubernetes:{group or 'core'}/{version}:{obj['kind']}"


def as_registered(directory: RegisteredResource, obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` after `directory`'s transforms (a copy; `obj` is left alone)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_registered(directory, obj))
    finally:
        loop.close()


async def _resolved(value: Any) -> Any:
    """`value` with every Output in it replaced by what it resolves to."""
    if isinstance(value, pulumi.Output):
        return await _resolved(await value.future())
    if isinstance(value, dict):
        return {k: await _resolved(v) for k, v in value.items()}
    if isinstance(value, list):
        return [await _resolved(v) for v in value]
    return value


async def _registered(directory: RegisteredResource, obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj["metadata"]
    props: dict[str, Any] = copy.deepcopy(obj)
    opts = pulumi.ResourceOptions()
    for transform in directory.transforms:
        result = transform(
            pulumi.ResourceTransformArgs(
                custom=True,
                type_=type_token(obj),
                name=f"{directory.name}:{metadata.get('namespace')}/{metadata['name']}",
                props=props,
                opts=opts,
            )
        )
        if inspect.isawaitable(result):
            result = await result
        if result is not None:
            props, opts = await _resolved(dict(result.props)), result.opts
    return props

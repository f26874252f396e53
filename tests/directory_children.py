"""Upstream objects as a kustomize Directory registers them: through the Directory's transforms.

Under mocks a remote component registers no children, so its transforms never run; these
helpers run them the way the engine does on each child.  The Directory registers every rendered
object with the object itself as its inputs, named `<directory>:<namespace>/<name>`
(pulumi/pulumi-kubernetes@94977969:provider/pkg/provider/yaml/v2/yaml.go), and the engine hands
each transform the previous one's result.
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
            result = asyncio.new_event_loop().run_until_complete(result)
        if result is not None:
            props, opts = dict(result.props), result.opts
    return props

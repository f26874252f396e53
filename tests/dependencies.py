"""What a registered resource waits for, read from the dependencies the harness records."""

from __future__ import annotations

from harness.program import ProgramRun, RegisteredResource


def waits_for(run: ProgramRun, resource: RegisteredResource) -> set[str]:
    """Every URN `resource` waits for through its own dependencies, transitively.

    A dependency on a component resource is a dependency on all its descendants, as the engine
    treats it; a component's own dependencies do not hold back its children, so parents are not
    followed.
    """
    by_urn = {r.urn: r for r in run.resources}
    children: dict[str, list[str]] = {}
    for r in run.resources:
        if r.parent:
            children.setdefault(r.parent, []).append(r.urn)
    seen: set[str] = set()
    pending = list(resource.dependencies)
    while pending:
        urn = pending.pop()
        if urn in seen:
            continue
        seen.add(urn)
        if urn in by_urn:
            pending.extend(by_urn[urn].dependencies)
            if not by_urn[urn].custom:
                pending.extend(children.get(urn, ()))
    return seen

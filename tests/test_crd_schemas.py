"""Rendered ServiceMonitors, PodMonitors and PrometheusRules against prometheus-operator's types.

The validators come from @kubernetes-models/prometheus-operator (npm, pinned in tests/crd), which
is generated from the monitoring.coreos.com/v1 Go types: types, required fields, enums and
patterns (durations, for instance) are checked; unknown keys are not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness.render import kubernetes_objects
from tests.conftest import STACKS, stack_run

CRD_DIR = Path(__file__).parent / "crd"
NODE = shutil.which("node")
needs_models = pytest.mark.skipif(
    (NODE is None or not (CRD_DIR / "node_modules").is_dir()) and not os.environ.get("CI"),
    reason="Node.js or tests/crd/node_modules is missing (make setup installs the models)",
)


def validate(objects: list[dict[str, Any]]) -> tuple[int, dict[str, str]]:
    assert NODE is not None, "CI must install Node.js (.ci/run)"
    result = subprocess.run(
        [NODE, str(CRD_DIR / "validate.mjs")],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    return report["checked"], report["problems"]


@needs_models
@pytest.mark.parametrize("stack", STACKS)
def test_monitoring_objects_conform(stack: str) -> None:
    objects = [
        o
        for o in kubernetes_objects(stack_run(stack))
        if o["apiVersion"] == "monitoring.coreos.com/v1"
    ]
    assert objects, "no monitoring objects rendered"
    checked, problems = validate(objects)
    assert checked == len(objects)
    assert problems == {}


@needs_models
def test_the_validator_rejects_bad_objects() -> None:
    """A control: wrong types and malformed durations are caught."""
    bad = [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "numeric-port"},
            "spec": {"selector": {}, "endpoints": [{"port": 8080}]},
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {"name": "bad-for"},
            "spec": {
                "groups": [{"name": "g", "rules": [{"alert": "A", "expr": "1", "for": "5 min"}]}]
            },
        },
    ]
    checked, problems = validate(bad)
    assert checked == 2
    assert set(problems) == {"ServiceMonitor/numeric-port", "PrometheusRule/bad-for"}

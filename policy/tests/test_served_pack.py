"""The pack as Pulumi runs it: `python -m pulumi.policy` serving the Analyzer gRPC interface.

This is what `pulumi preview --policy-pack policy` starts; here the test plays the engine's part
(GetAnalyzerInfo, Configure, Analyze) without the Pulumi CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from ml_platform_policy import POLICIES
from tests.helpers import TFJOB, UNKNOWN, container, pod_spec, tfjob

POLICY_DIR = Path(__file__).resolve().parent.parent
MANDATORY = analyzer_pb2.EnforcementLevel.MANDATORY


@pytest.fixture(scope="module")
def analyzer() -> Iterator[Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."],
        cwd=POLICY_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip().isdigit():
            process.kill()
            _, errors = process.communicate(timeout=30)
            pytest.fail(f"the pack did not start: {line!r} {errors}")
        channel = grpc.insecure_channel(f"127.0.0.1:{int(line)}")
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.kill()
        process.communicate(timeout=30)


def struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(dict(value))
    return result


def analyze(stub: Any, resource_type: str, props: Mapping[str, Any]) -> list[Any]:
    request = analyzer_pb2.AnalyzeRequest(
        type=resource_type,
        properties=struct(props),
        urn=f"urn:pulumi:test::ml-platform::{resource_type}::subject",
        name="subject",
    )
    return list(stub.Analyze(request).diagnostics)


def test_the_served_pack_declares_every_rule_mandatory(analyzer: Any) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "ml-platform"
    assert info.supportsConfig
    assert sorted(p.name for p in info.policies) == sorted(p.name for p in POLICIES)
    assert all(p.enforcementLevel == MANDATORY for p in info.policies)


def test_the_served_pack_reports_violations_as_mandatory(analyzer: Any) -> None:
    inputs = tfjob({"Worker": pod_spec(container(limits={"nvidia.com/gpu": 0.5}, privileged=True))})
    diagnostics = analyze(analyzer, TFJOB, inputs)
    assert sorted(d.policyName for d in diagnostics) == [
        "gpu-whole-and-equal-to-limits",
        "no-privileged-pods-outside-node-agents",
    ]
    assert all(d.enforcementLevel == MANDATORY for d in diagnostics)


def test_unknown_values_in_a_preview_do_not_stop_the_rules(analyzer: Any) -> None:
    # A freshly built image is unknown during preview: the GPU rule still checks the limits,
    # and nothing reports "can't run policy ... during preview".
    inputs = tfjob({"Worker": pod_spec(container(image=UNKNOWN, limits={"nvidia.com/gpu": "0.5"}))})
    diagnostics = analyze(analyzer, TFJOB, inputs)
    assert [d.policyName for d in diagnostics] == ["gpu-whole-and-equal-to-limits"]
    assert "during preview" not in diagnostics[0].message


def test_the_namespace_config_reaches_the_rule(analyzer: Any) -> None:
    inputs = tfjob({"Worker": pod_spec(container(privileged=True))}, namespace="node-agents")
    assert [d.policyName for d in analyze(analyzer, TFJOB, inputs)] == [
        "no-privileged-pods-outside-node-agents"
    ]
    config = analyzer_pb2.PolicyConfig(
        enforcementLevel=MANDATORY,
        properties=struct({"nodeAgentNamespaces": ["node-agents"]}),
    )
    analyzer.Configure(
        analyzer_pb2.ConfigureAnalyzerRequest(
            policyConfig={"no-privileged-pods-outside-node-agents": config}
        )
    )
    try:
        assert analyze(analyzer, TFJOB, inputs) == []
    finally:
        default = analyzer_pb2.PolicyConfig(enforcementLevel=MANDATORY, properties=struct({}))
        analyzer.Configure(
            analyzer_pb2.ConfigureAnalyzerRequest(
                policyConfig={"no-privileged-pods-outside-node-agents": default}
            )
        )

"""Fluent Bit: its configuration, where it runs, the CloudWatch group and role it writes with."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from harness.program import ProgramRun, run_program, stack_config, stack_settings
from infra import names, versions
from infra.schedulability import tolerates
from infra.scheduling import GPU_POOL_TAINTS
from infra.settings.base import quantity_value
from tests.conftest import STACKS, stack_run
from tests.upstream_facts import facts

Section = tuple[str, dict[str, str]]


def parse_sections(text: str) -> list[Section]:
    """Fluent Bit's classic format: `[KIND]` headers, then `key value` lines indented under them."""
    sections: list[Section] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        header = re.fullmatch(r"\[([A-Z]+)\]", line)
        if header:
            sections.append((header.group(1), {}))
            continue
        assert sections, f"option outside a section: {line!r}"
        assert line.startswith("    "), f"unindented option: {line!r}"
        key, _, value = line.strip().partition(" ")
        assert value.strip(), f"option without a value: {line!r}"
        assert key not in sections[-1][1], f"{key} set twice"
        sections[-1][1][key] = value.strip()
    return sections


def _release(run: ProgramRun) -> dict[str, Any]:
    [release] = [
        r.inputs
        for r in run.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs["chart"] == "fluent-bit"
    ]
    return release


def _config(run: ProgramRun) -> dict[str, list[Section]]:
    return {k: parse_sections(v) for k, v in _release(run)["values"]["config"].items()}


@pytest.mark.parametrize("stack", STACKS)
def test_fluent_bit_is_pinned_and_runs_on_every_node(stack: str) -> None:
    release = _release(stack_run(stack))
    assert (release["chart"], release["version"]) == (
        versions.FLUENT_BIT_CHART.chart,
        versions.FLUENT_BIT_CHART.version,
    )
    assert release["namespace"] == names.LOGGING
    values = release["values"]
    assert values["priorityClassName"] == "system-node-critical"
    for taint in GPU_POOL_TAINTS:
        assert any(tolerates(t, taint) for t in values["tolerations"]), taint
    assert values["resources"]["limits"]["memory"]


@pytest.mark.parametrize("stack", STACKS)
def test_positions_and_buffer_survive_restarts_on_a_mounted_host_path(stack: str) -> None:
    values = _release(stack_run(stack))["values"]
    config = _config(stack_run(stack))
    [(_, service)] = config["service"]
    [mount] = values["extraVolumeMounts"]
    [volume] = values["extraVolumes"]
    assert mount["name"] == volume["name"]
    assert volume["hostPath"]["path"] == mount["mountPath"]
    state = mount["mountPath"]
    assert service["storage.path"].startswith(state + "/")
    for kind, options in config["inputs"]:
        assert kind == "INPUT"
        assert options["DB"].startswith(state + "/"), options
        assert options["storage.type"] == "filesystem"


@pytest.mark.parametrize("stack", STACKS)
def test_containers_are_read_with_metadata_and_not_its_own_logs(stack: str) -> None:
    config = _config(stack_run(stack))
    tail = next(o for _, o in config["inputs"] if o["Name"] == "tail")
    assert tail["multiline.parser"] == "docker, cri"
    own = re.compile(tail["Exclude_Path"].replace("*", ".*"))
    assert own.fullmatch("/var/log/containers/fluent-bit-x7k2p_logging_fluent-bit-0123abcd.log")
    assert not own.fullmatch("/var/log/containers/mnist-worker-0_research_tensorflow-0123.log")
    [(_, kubernetes)] = config["filters"]
    assert kubernetes["Name"] == "kubernetes"
    assert re.fullmatch(kubernetes["Match"].replace("*", ".*"), tail["Tag"].replace("*", "x"))
    assert kubernetes["Merge_Log"] == "On"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_cloudwatch_group_role_and_output_agree(stack: str) -> None:
    run = stack_run(stack)
    settings = stack_settings(stack)
    group_name = f"/aws/eks/{settings.cluster.name}/containers"
    [group] = [
        r for r in run.of_type("aws:cloudwatch/logGroup:LogGroup") if r.inputs["name"] == group_name
    ]
    assert group.inputs["retentionInDays"] == settings.logging.retention_days
    [(_, output)] = _config(run)["outputs"]
    assert output["Name"] == "cloudwatch_logs"
    assert output["log_group_name"] == group_name
    assert output["auto_create_group"] == "false"  # the group above, with its retention
    assert output["region"] == settings.aws.region  # type: ignore[union-attr]
    assert "$kubernetes['pod_name']" in output["log_stream_template"]

    [association] = [
        r.inputs
        for r in run.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
        if r.inputs["namespace"] == names.LOGGING
    ]
    service_account = _release(run)["values"]["serviceAccount"]
    assert association["serviceAccount"] == service_account["name"]
    assert service_account["create"] is True
    [policy] = [
        json.loads(r.inputs["policy"])
        for r in run.of_type("aws:iam/rolePolicy:RolePolicy")
        if "logging-writer" in r.name
    ]
    [statement] = policy["Statement"]
    arn = group.outputs["arn"]
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == [arn, f"{arn}:log-stream:*"]
    # Exactly the calls the output makes with auto_create_group off (set above), read from the
    # Fluent Bit the chart runs.
    calls = facts("fluent-bit-cloudwatch-output", pinned=versions.FLUENT_BIT_VERSION)
    assert sorted(statement["Action"]) == sorted(calls["always"])
    assert not set(statement["Action"]) & set(calls["auto_create_group_only"])


def test_local_stack_prints_logs_and_creates_nothing_on_aws() -> None:
    run = stack_run("local")
    [(_, output)] = _config(run)["outputs"]
    assert output["Name"] == "stdout"
    assert not [r for r in run.resources if r.type.startswith("aws:")]


def test_forward_output_points_at_the_aggregator() -> None:
    config = stack_config("local")
    config["ml-platform:logging"] = {
        "destination": "forward",
        "forward": {"host": "fluentd.logs.svc", "port": 24240},
    }
    [(_, output)] = _config(run_program("local", config))["outputs"]
    assert (output["Name"], output["Host"], output["Port"]) == (
        "forward",
        "fluentd.logs.svc",
        "24240",
    )
    assert output["tls"] == "on"


def test_switched_off_nothing_is_installed() -> None:
    config = stack_config("dev")
    config["ml-platform:logging"] = {"enabled": False}
    run = run_program("dev", config)
    assert not [
        r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["chart"] == "fluent-bit"
    ]
    assert not [r for r in run.resources if "logging-writer" in r.name]


def test_the_parser_rejects_an_option_outside_a_section() -> None:
    with pytest.raises(AssertionError, match="outside a section"):
        parse_sections("    Name tail\n")


FLUENT_BIT = facts("fluent-bit-storage", pinned=versions.FLUENT_BIT_VERSION)
# Our allowance for Fluent Bit's own memory besides buffered chunks (tail's read buffers, the
# Kubernetes metadata cache, the output's requests): a stated margin, not a measured figure.
BASELINE = 96 * 2**20
# A chunk takes writes until it is past its nominal size, so each is counted at twice that.
CHUNK_OVERSHOOT = 2


def _fluent_bit_bytes(size: str) -> int:
    """Fluent Bit's size notation: decimal K/M/G with an optional B."""
    match = re.fullmatch(r"(\d+)([KMG]?)B?", size.upper())
    assert match, size
    number, unit = match.groups()
    return int(number) * (FLUENT_BIT["size_units"][unit] if unit else 1)


@pytest.mark.parametrize("stack", STACKS)
def test_buffered_chunks_fit_the_memory_limit_with_room_for_fluent_bit(stack: str) -> None:
    """Chunks up (with the one being written), each at twice its size, and the backlog's share,
    plus BASELINE, stay within the container's memory limit."""
    run = stack_run(stack)
    [(_, service)] = _config(run)["service"]
    chunks_up = int(service.get("storage.max_chunks_up", FLUENT_BIT["default_max_chunks_up"]))
    per_chunk = CHUNK_OVERSHOOT * FLUENT_BIT["chunk_max_size"]
    mapped = (chunks_up + FLUENT_BIT["forced_up_at_once"]) * per_chunk
    backlog = _fluent_bit_bytes(
        service.get("storage.backlog.mem_limit", FLUENT_BIT["default_backlog_mem_limit"])
    )
    limit = int(quantity_value(_release(run)["values"]["resources"]["limits"]["memory"]))
    assert mapped + backlog + BASELINE <= limit, (
        f"{chunks_up} chunks up: {mapped + backlog:,} B buffered + {BASELINE:,} B for Fluent Bit "
        f"> {limit:,} B"
    )


@pytest.mark.parametrize("stack", STACKS)
def test_filesystem_inputs_pause_on_the_chunk_limit_not_on_mem_buf_limit(stack: str) -> None:
    for _, options in _config(stack_run(stack))["inputs"]:
        if options.get("storage.type", "memory").lower() != "filesystem":
            continue
        assert options.get(FLUENT_BIT["pause_option"], "off").lower() in ("on", "true"), options
        # Mem_Buf_Limit would never act on these inputs: a setting that suggests a cap that is not.
        assert FLUENT_BIT["mem_buf_limit_pauses_filesystem_inputs"] is False
        assert "mem_buf_limit" not in {key.lower() for key in options}, options


def test_fluent_bit_sizes_are_decimal() -> None:
    assert _fluent_bit_bytes("16M") == 16_000_000
    assert _fluent_bit_bytes("2G") == 2_000_000_000
    assert int(quantity_value("256Mi")) == 268_435_456


def test_the_fluent_bit_version_is_the_one_the_chart_runs() -> None:
    chart = facts("fluent-bit-chart", pinned=f"fluent-bit-{versions.FLUENT_BIT_CHART.version}")
    assert f"v{chart['app_version']}" == versions.FLUENT_BIT_VERSION
    # The release sets no image tag of its own.
    assert "image" not in _release(stack_run("local"))["values"]

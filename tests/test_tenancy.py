"""Team quotas and limit ranges: GPU-correct keys, defaults that inject nothing, and the check
that stops declared work a team's quota could never admit."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from harness.program import ProgramError, run_program, stack_config, stack_settings
from harness.render import kubernetes_objects
from infra import gpu_sharing
from infra.settings import SettingsError
from infra.team_quota import workload_requests
from tests.conftest import STACKS, stack_run
from workloads import manifests


def _team_objects(stack: str, kind: str) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["namespace"]: o
        for o in kubernetes_objects(stack_run(stack))
        if o["kind"] == kind and o["metadata"]["name"] == "team"
    }


@pytest.mark.parametrize("stack", STACKS)
def test_every_team_has_a_quota_on_gpu_requests_only(stack: str) -> None:
    settings = stack_settings(stack)
    quotas = _team_objects(stack, "ResourceQuota")
    assert set(quotas) == {team.name for team in settings.teams}
    resources = {gpu_sharing.GPU, *(gpu_sharing.resource_name(p) for p in settings.node_pools.gpu)}
    for team in settings.teams:
        hard = quotas[team.name]["spec"]["hard"]
        assert hard["requests.cpu"] == team.quota.cpu
        assert hard["requests.memory"] == team.quota.memory
        for resource in resources:
            assert hard[f"requests.{resource}"] == str(team.quota.gpus)
        # Kubernetes ignores limits.<extended resource> in a quota: it would cap nothing.
        assert not [key for key in hard if key.startswith("limits.")]
        assert hard["persistentvolumeclaims"] == str(team.quota.volume_claims)


def test_shared_gpu_resources_are_quotad_too() -> None:
    hard = _team_objects("prod", "ResourceQuota")["research"]["spec"]["hard"]
    shared = [key for key in hard if key.startswith("requests.") and "shared" in key]
    assert shared, hard


@pytest.mark.parametrize("stack", STACKS)
def test_limit_ranges_default_cpu_and_memory_requests_and_never_gpus(stack: str) -> None:
    for limit_range in _team_objects(stack, "LimitRange").values():
        [item] = limit_range["spec"]["limits"]
        assert item["type"] == "Container"
        assert set(item["defaultRequest"]) == {"cpu", "memory"}
        # A max or default for a GPU would become every container's GPU limit.
        assert set(item) == {"type", "defaultRequest"}


def test_workload_requests_count_every_replica() -> None:
    settings = stack_settings("dev")
    team = settings.teams[0]
    job = team.training_jobs[0].model_copy(update={"chief": True, "workers": 3})
    totals = workload_requests(manifests.training_job(settings, team.name, job))
    assert totals["nvidia.com/gpu"] == Decimal(4 * job.gpus_per_worker)
    assert totals["cpu"] >= 4 * Decimal(job.cpu)


def test_a_job_larger_than_its_teams_quota_stops_the_program() -> None:
    config = stack_config("dev")
    config["ml-platform:teams"][0]["quota"]["gpus"] = 1  # the mnist job runs 2 workers x 1 GPU
    with pytest.raises(ProgramError) as caught:
        run_program("dev", config)
    assert isinstance(caught.value.cause, SettingsError)
    message = str(caught.value.cause)
    assert "ml-platform:teams[0].trainingJobs[0]: needs 2 nvidia.com/gpu in total" in message
    assert "(quota.gpus: 1)" in message
    assert caught.value.resources == []


def test_shared_volumes_over_the_storage_quota_stop_the_program() -> None:
    config = stack_config("dev")
    config["ml-platform:teams"][0]["quota"]["storage"] = "1Gi"
    with pytest.raises(ProgramError) as caught:
        run_program("dev", config)
    message = str(caught.value.cause)
    assert "ml-platform:teams[0].quota: quota.storage 1Gi is below" in message
    assert caught.value.resources == []

"""One-shot objects under Pulumi: jobs that run once, stay, and rerun only when declared anew.

A TFJob, PyTorchJob or batch Job that something deletes once it has finished (a TTL) is, to
Pulumi, drift: the nightly `--refresh --expect-no-changes` check fails, and the next `up` creates
it again, training again.  So nothing the program manages expires; a finished job stays as the
record of its run, and only a change of its declaration replaces (reruns) it.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import pytest

from harness.program import ProgramRun
from harness.render import kubernetes_objects
from harness.schema import definitions
from infra import versions
from tests.conftest import STACKS, stack_run
from tests.dependencies import waits_for
from tests.upstream_facts import facts
from workloads.custom_resources import ONE_SHOT_KINDS

TRAINER = facts("trainer-job-lifetime", pinned=versions.TRAINING_OPERATOR.ref)
PROVIDER = facts(
    "pulumi-kubernetes-lifecycle", pinned=importlib.metadata.version("pulumi-kubernetes")
)
JOB_AWAIT = facts(
    "pulumi-kubernetes-job-await", pinned=importlib.metadata.version("pulumi-kubernetes")
)


def _one_shot(run: ProgramRun) -> list[dict[str, Any]]:
    return [o for o in kubernetes_objects(run) if o["kind"] in {"Job", *ONE_SHOT_KINDS}]


def test_every_stack_that_declares_jobs_is_checked() -> None:
    kinds = {o["kind"] for stack in STACKS for o in _one_shot(stack_run(stack))}
    assert kinds >= {"Job", "TFJob"}, kinds


@pytest.mark.parametrize("stack", STACKS)
def test_no_managed_job_expires(stack: str) -> None:
    """Nothing deletes a finished job the program manages, so a refresh finds it unchanged."""
    assert TRAINER["deletes_finished_job_after_ttl"]
    assert not TRAINER["defaults_set_ttl"]
    operator_field = TRAINER["ttl_field"].split(".")
    for declared in _one_shot(stack_run(stack)):
        meta = declared["metadata"]
        where = f"{declared['kind']} {meta['namespace']}/{meta['name']}"
        # Katib keeps an Experiment; each trial's job is checked like a declared one.
        obj = (
            declared["spec"]["trialTemplate"]["trialSpec"]
            if declared["kind"] == "Experiment"
            else declared
        )
        if obj["kind"] == "Job":
            assert "ttlSecondsAfterFinished" not in obj["spec"], where
        else:
            policy = obj["spec"]
            for key in operator_field[:-1]:
                policy = policy[key]
            assert operator_field[-1] not in policy, where


def test_kubernetes_deletes_only_jobs_that_ask_for_it() -> None:
    """The TTL-after-finished controller leaves a Job without the field alone (API reference)."""
    job_spec = definitions(versions.DEFAULT_KUBERNETES_VERSION)["io.k8s.api.batch.v1.JobSpec"]
    field = job_spec["properties"]["ttlSecondsAfterFinished"]
    assert "If this field is unset, the Job won't be automatically deleted." in field["description"]


@pytest.mark.parametrize("stack", STACKS)
def test_training_jobs_rerun_only_when_their_declaration_changes(stack: str) -> None:
    """A changed spec replaces the job (old one deleted first); an unchanged one is left alone.

    The provider finds no replacement in a custom resource's spec, and updating a finished job
    in place would not train again; nor would it set deleteBeforeReplace for a replacement the
    program forces, and the new job's create would fail on the old one's name.
    """
    assert PROVIDER["custom_resource_replace_fields"] == []
    assert PROVIDER["delete_before_replace_only_for_provider_replacements"]
    run = stack_run(stack)
    for resource in run.resources:
        kind = resource.inputs.get("kind")
        if not resource.type.startswith("kubernetes:kubeflow.org/"):
            continue
        if kind in ONE_SHOT_KINDS:
            assert resource.replace_on_changes == ("spec",), resource.name
            assert resource.delete_before_replace, resource.name
        else:  # notebooks keep running: a change updates them in place
            assert resource.replace_on_changes == (), resource.name
        assert resource.inputs["metadata"]["name"], resource.name


@pytest.mark.parametrize("stack", STACKS)
def test_the_staging_job_is_replaced_only_by_a_new_template(stack: str) -> None:
    """The provider replaces a Job whose template changed, deleting it first (it is named)."""
    assert ".spec.template" in PROVIDER["job_replace_fields"]
    run = stack_run(stack)
    for resource in run.of_type("kubernetes:batch/v1:Job"):
        assert resource.inputs["metadata"]["name"], resource.name
        assert "generateName" not in resource.inputs["metadata"], resource.name
        assert resource.replace_on_changes == (), resource.name


def test_training_jobs_are_created_only_after_the_data_is_staged() -> None:
    """Every training job depends on the staging Job, whose create ends only when it completed.

    The provider's create of a Job waits for its `Complete` condition (and fails on a failed
    Job), unless an annotation overrides that await; so a dependant is created only once the
    data is there, and a worker never starts before it and burns its `backoffLimit`.
    """
    assert JOB_AWAIT["job_has_built_in_await"]
    assert "condition Complete=True" in JOB_AWAIT["job_ready_when"]
    checked = 0
    for stack in STACKS:
        run = stack_run(stack)
        staging = [
            job
            for job in run.of_type("kubernetes:batch/v1:Job")
            if job.inputs["metadata"]["name"] == "stage-mnist"
        ]
        if not staging:
            continue
        [job] = staging
        annotations = job.inputs["metadata"].get("annotations", {})
        assert not set(annotations) & set(JOB_AWAIT["await_override_annotations"]), annotations
        # The await outlasts the Job's deadline, so the Job's own verdict decides, never an
        # await timeout while the Job may still complete.
        deadline = int(job.inputs["spec"]["activeDeadlineSeconds"])
        assert "DeadlineExceeded" in JOB_AWAIT["job_fails_on"]
        assert int(annotations[JOB_AWAIT["timeout_annotation"]]) > deadline
        for resource in run.resources:
            if resource.type.startswith("kubernetes:kubeflow.org/") and (
                resource.inputs.get("kind") in ONE_SHOT_KINDS
            ):
                assert job.urn in waits_for(run, resource), f"{stack}: {resource.name}"
                checked += 1
    assert checked, "no stack declares a training job beside the staging Job"

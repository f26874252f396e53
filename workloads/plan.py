"""Every workload a stack declares, built and checked before anything is registered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra import schedulability, team_quota
from infra.settings import Settings, SettingsError
from infra.settings.workloads import ArtifactAccess
from infra.workload_identity import service_account_name
from workloads import experiments, manifests


@dataclass(frozen=True)
class PlannedWorkload:
    key: str  # the stack config key that declares it, for error messages
    team: str
    manifest: dict[str, Any]
    artifacts: ArtifactAccess = "none"  # its S3 access to the stack's artifact bucket

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def service_account(self) -> str:
        return service_account_name(self.kind, self.name)


def plan_workloads(settings: Settings, training_image: Any = None) -> list[PlannedWorkload]:
    """Every declared workload; `training_image` is the stack's built image, when it builds one."""
    planned = []
    for index, team in enumerate(settings.teams):
        for position, job in enumerate(team.training_jobs):
            planned.append(
                PlannedWorkload(
                    f"ml-platform:teams[{index}].trainingJobs[{position}]",
                    team.name,
                    manifests.training_job(settings, team.name, job, training_image),
                    job.artifacts,
                )
            )
        for position, declared in enumerate(team.experiments):
            planned.append(
                PlannedWorkload(
                    f"ml-platform:teams[{index}].experiments[{position}]",
                    team.name,
                    experiments.experiment(settings, team.name, declared, training_image),
                    declared.trial.artifacts,
                )
            )
        for position, server in enumerate(team.notebooks):
            planned.append(
                PlannedWorkload(
                    f"ml-platform:teams[{index}].notebooks[{position}]",
                    team.name,
                    manifests.notebook(settings, team.name, server),
                    server.artifacts,
                )
            )
    return planned


def ensure_schedulable(planned: list[PlannedWorkload], settings: Settings, stack: str) -> None:
    """Stop the program (before it registers anything) if a declared workload cannot be placed."""
    problems = [
        f"  - {workload.key}: {problem}"
        for workload in planned
        for problem in schedulability.check([workload.manifest], settings)
    ]
    if problems:
        raise SettingsError(
            f"Pulumi.{stack}.yaml: declared workloads no node pool can run:\n" + "\n".join(problems)
        )


def ensure_within_quota(planned: list[PlannedWorkload], settings: Settings, stack: str) -> None:
    """Stop the program if a declared workload, or the shared volumes, exceed a team's quota.

    Such a workload would be accepted by `pulumi up` and then never get a pod admitted.
    """
    teams = {team.name: (index, team) for index, team in enumerate(settings.teams)}
    problems = [
        f"  - {workload.key}: {problem}"
        for workload in planned
        for problem in team_quota.quota_shortfalls(
            settings, teams[workload.team][1], workload.manifest
        )
    ]
    for index, team in teams.values():
        shortfall = team_quota.storage_shortfall(settings, team)
        if shortfall:
            problems.append(f"  - ml-platform:teams[{index}].quota: {shortfall}")
    if problems:
        raise SettingsError(
            f"Pulumi.{stack}.yaml: declared work exceeds its team's quota:\n" + "\n".join(problems)
        )

"""An ECR pull-through cache of Docker Hub for the stack's nodes (`aws.pullThroughCache`).

ECR pulls from Docker Hub with the credentials of the secret the stack names, from AWS addresses,
so the cluster's NAT address no longer meets Docker Hub's anonymous pull limits.  The images the
program renders point at the cache (infra/image_mirror.py); this component creates the rule and
lets the nodes make the cache's first pull of each image.

The first pull of an image through the cache creates its repository and imports the image, which
takes, besides the pull permissions nodes already have (AmazonEC2ContainerRegistryPullOnly),
`ecr:CreateRepository` and `ecr:BatchImportUpstreamImage` (Amazon ECR user guide, "IAM permissions
required to sync an upstream registry with an Amazon ECR private registry").  Both are granted on
the cache's repositories only, `repository/<prefix>/*` (Service Authorization Reference for
Amazon ECR: both actions take the `repository` resource type).

Resource inputs and outputs: pulumi/pulumi-aws@v7.51.1:sdk/python/pulumi_aws/ecr/
pull_through_cache_rule.py (`ecr_repository_prefix`, `upstream_registry_url`, `credential_arn`;
output `registry_id`).
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.iam import policy_document
from infra.image_mirror import DOCKER_HUB_UPSTREAM
from infra.settings.cluster import PullThroughCacheSettings

# What a node needs beyond pulling for the cache to fetch an image it does not hold yet.
FIRST_PULL_ACTIONS = ("ecr:BatchImportUpstreamImage", "ecr:CreateRepository")


def cache_repositories_arn(partition: str, region: str, account: str, prefix: str) -> str:
    """Every repository of the cache: those ECR creates under `<prefix>/`."""
    return f"arn:{partition}:ecr:{region}:{account}:repository/{prefix}/*"


def first_pull_policy(repositories_arn: str) -> dict[str, Any]:
    return policy_document(
        [
            {
                "Sid": "DockerHubCacheFirstPulls",
                "Effect": "Allow",
                "Action": sorted(FIRST_PULL_ACTIONS),
                "Resource": repositories_arn,
            }
        ]
    )


def _same_account(registry_id: str, settings: PullThroughCacheSettings) -> str:
    """The rule's registry must be the secret's account, which the rendered images name."""
    if registry_id != settings.account:
        raise pulumi.RunError(
            f"aws.pullThroughCache.credentialArn is a secret of account {settings.account}, but "
            f"this stack deploys to account {registry_id}; ECR needs the secret in the cache "
            "rule's own account: create it there and give its ARN"
        )
    return registry_id


class DockerHubCache(pulumi.ComponentResource):
    """The pull-through cache rule for Docker Hub and the nodes' first-pull permissions."""

    rule: aws.ecr.PullThroughCacheRule

    def __init__(
        self,
        name: str,
        *,
        settings: PullThroughCacheSettings,
        region: str,
        node_role: aws.iam.Role,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:images:DockerHubCache", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.rule = aws.ecr.PullThroughCacheRule(
            f"{name}-rule",
            ecr_repository_prefix=settings.repository_prefix,
            upstream_registry_url=DOCKER_HUB_UPSTREAM,
            credential_arn=settings.credential_arn,
            opts=child,
        )
        account = self.rule.registry_id.apply(lambda rid: _same_account(rid, settings))
        policy = account.apply(
            lambda acct: json.dumps(
                first_pull_policy(
                    cache_repositories_arn(
                        settings.partition, region, acct, settings.repository_prefix
                    )
                )
            )
        )
        aws.iam.RolePolicy(f"{name}-first-pulls", role=node_role.id, policy=policy, opts=child)
        self.register_outputs({"registryId": self.rule.registry_id})

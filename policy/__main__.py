"""Entry point Pulumi runs for `pulumi preview --policy-pack policy`."""

from pulumi_policy import EnforcementLevel, PolicyPack

from ml_platform_policy import PACK_NAME, POLICIES

PolicyPack(
    name=PACK_NAME,
    policies=list(POLICIES),
    enforcement_level=EnforcementLevel.MANDATORY,
    description="What the ml-platform must never ship: GPU, exposure, privilege and IAM rules.",
)

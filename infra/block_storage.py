"""The StorageClass that block volumes come from, and the claims that must name it.

Prometheus, Alertmanager, and Kubeflow Pipelines' MySQL and SeaweedFS each keep a ReadWriteOnce
volume.  Amazon EKS no longer marks its `gp2` class default on clusters created on 1.30 or later
(EKS user guide, kubernetes-versions-extended.html, "Kubernetes 1.30": "You should reference the
StorageClass by the name gp2"), so a claim that names no class stays Pending there.  AWS stacks
therefore create their own class (encrypted gp3 on the EBS CSI add-on), mark it default for claims
others write, and every claim this program writes or configures names it: Prometheus's and
Alertmanager's in the Helm values (infra/monitoring.py), the claims of the upstream Kubeflow bundles
through `claim_class_transform`.  Existing clusters name their own class in
`storage.blockStorageClassName`.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra import labels
from infra.settings import Settings

# kubernetes-sigs/aws-ebs-csi-driver@v1.64.0:cmd/main.go (the driver registers as
# ebs.csi.aws.com), the tag nearest the pinned add-on v1.66.0-eksbuild.1.
EBS_DRIVER = "ebs.csi.aws.com"
EBS_CLASS = "gp3-encrypted"
# What marks a class the cluster's default, for claims that name none (kubernetes.io, "Change the
# default StorageClass"; kind's own default class carries it:
# kubernetes-sigs/kind@v0.31.0:pkg/build/nodeimage/const_storage.go).
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
CLAIM_TYPE = "kubernetes:core/v1:PersistentVolumeClaim"


def ebs_parameters() -> dict[str, str]:
    """CreateVolume parameters of the EBS class.

    kubernetes-sigs/aws-ebs-csi-driver@v1.64.0:docs/parameters.md: `type` gp3 (also the driver's
    own default, named so the class says what it provisions) and `encrypted` "true" (default
    false).  With no `kmsKeyId` EBS uses the region's `aws/ebs` key.  A key of our own would also
    need KMS permissions added to the driver's role (EKS user guide, csi-iam-role.html: "If you
    use a custom KMS key ... customize the IAM role"; the driver's docs/install.md, "Encrypted
    EBS Volumes via KMS").
    """
    return {"type": "gp3", "encrypted": "true"}


class BlockStorage(pulumi.ComponentResource):
    """The class block claims name (`class_name`), and what they must wait for (`ready`)."""

    class_name: str | None
    ready: list[pulumi.Resource]

    def __init__(
        self,
        name: str,
        *,
        settings: Settings,
        after: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`after`: what the class waits for in AWS stacks (the EBS CSI add-on, the nodes)."""
        super().__init__("ml-platform:storage:BlockStorage", name, None, opts)
        self.ready = []
        if settings.cluster.mode == "eks":
            self.class_name = EBS_CLASS
            self.ready = [self._ebs_class(name, after)]
        else:
            # The settings require it when monitoring or Pipelines claim block volumes.
            self.class_name = settings.storage.block_storage_class_name
        self.register_outputs({"className": self.class_name})

    def required_class(self) -> str:
        """The class name, for a component that claims block volumes."""
        assert self.class_name is not None, "the settings require storage.blockStorageClassName"
        return self.class_name

    def claim_transforms(self) -> list[pulumi.ResourceTransform]:
        """Transforms that give an upstream bundle's class-less claims this class."""
        return [claim_class_transform(self.class_name)] if self.class_name else []

    def _ebs_class(self, name: str, after: list[pulumi.Resource]) -> k8s.storage.v1.StorageClass:
        return k8s.storage.v1.StorageClass(
            f"{name}-{EBS_CLASS}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=EBS_CLASS,
                labels=labels.common("storage"),
                # Claims others write (charts, operators) land here too, rather than Pending.
                annotations={DEFAULT_CLASS_ANNOTATION: "true"},
            ),
            provisioner=EBS_DRIVER,
            parameters=ebs_parameters(),
            # An EBS volume lives in one zone: create it where the pod is scheduled
            # (docs/parameters.md, "Volume Availability Zone and Topologies").
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            # Prometheus's, Alertmanager's and Pipelines' volumes go with their claims.
            reclaim_policy="Delete",
            opts=pulumi.ResourceOptions(parent=self, depends_on=after),
        )


def claim_class_transform(class_name: str) -> pulumi.ResourceTransform:
    """A transform that names `class_name` on every claim of a bundle that names no class.

    Given to a kustomize Directory, it runs on each object the bundle registers, with the object's
    fields as props (pulumi/pulumi-kubernetes@94977969:tests/sdk/nodejs/testdata/await/cert-manager/
    index.ts does the same to a yaml/v2 ConfigFile's children).  Claims that name a class, or `""`
    (pre-bound to a volume), are left alone.

    Why the class is named rather than left to the default (pulumi-kubernetes@94977969, the
    newest commit available here; the program pins SDK 4.34.2, which is newer and was not read):
    provider/pkg/await/awaiters.go waits up to 5 minutes for a new claim to be Bound, or only
    Pending when its named class binds WaitForFirstConsumer, and it looks the class up by the
    name on the claim.  And the class is fixed once the claim exists: provider/pkg/provider/
    diff.go lists `.spec.storageClassName` among a claim's force-new fields, and replacing the
    Pipelines database's claim would delete its data, so the field is not diffed after creation
    (nor for claims created before it was named).
    """

    def name_the_class(
        args: pulumi.ResourceTransformArgs,
    ) -> pulumi.ResourceTransformResult | None:
        given = args.props.get("spec")
        if args.type_ != CLAIM_TYPE or not isinstance(given, dict):
            return None
        if "storageClassName" in given:
            return None
        spec: dict[str, Any] = {**given, "storageClassName": class_name}
        return pulumi.ResourceTransformResult(
            props={**args.props, "spec": spec},
            opts=pulumi.ResourceOptions.merge(
                args.opts, pulumi.ResourceOptions(ignore_changes=["spec.storageClassName"])
            ),
        )

    return name_the_class

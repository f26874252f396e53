"""Kubeflow components, each installed from its pinned upstream kustomization when switched on.

- Training Operator v1 (TFJob, PyTorchJob) in `kubeflow`;
- the notebook controller (without Istio) in `notebook-controller-system`, with idle culling on;
- Kubeflow Pipelines standalone in `kubeflow`; in AWS stacks its objects go to the stack's S3
  bucket (`infra/pipeline_store.py`), elsewhere to the upstream in-cluster object store.

The bundles declare objects they share (the `kubeflow` namespace, which this program also creates
with its Pod Security labels), so they are applied through the cluster's installer provider, which
adopts an existing object instead of failing.  Namespaces and CRDs they bring are retained on
delete: switching one component off must not delete a namespace another one lives in, nor every
custom resource of a CRD.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra import names, versions
from infra.block_storage import BlockStorage
from infra.pipeline_store import PipelineStoreAccess, S3PipelineStore, point_pipelines_at_s3
from infra.settings import KubeflowSettings

RETAINED_TYPES = frozenset(
    {
        "kubernetes:core/v1:Namespace",
        "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition",
    }
)
NOTEBOOK_CONTROLLER_DEPLOYMENT = "notebook-controller-deployment"
NOTEBOOK_CONTROLLER_CONTAINER = "manager"


def retain_shared_objects(
    args: pulumi.ResourceTransformArgs,
) -> pulumi.ResourceTransformResult | None:
    """Keep namespaces and CRDs of an upstream bundle when the bundle is removed."""
    if args.type_ not in RETAINED_TYPES:
        return None
    return pulumi.ResourceTransformResult(
        props=args.props,
        opts=pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(retain_on_delete=True)),
    )


def culling_env(settings: KubeflowSettings) -> list[dict[str, str]]:
    """The notebook controller's culling settings: stop servers idle for the configured time."""
    return [
        {"name": "ENABLE_CULLING", "value": "true"},
        {"name": "CULL_IDLE_TIME", "value": str(settings.notebooks.cull_idle_minutes)},
        {"name": "IDLENESS_CHECK_PERIOD", "value": "1"},
    ]


class KubeflowInstalls(pulumi.ComponentResource):
    """The enabled Kubeflow components; custom resources depend on `installer_of(kind)`."""

    training_operator: k8s.kustomize.v2.Directory | None = None
    notebook_controller: k8s.kustomize.v2.Directory | None = None
    pipelines: k8s.kustomize.v2.Directory | None = None
    pipeline_store: PipelineStoreAccess | None = None

    def __init__(
        self,
        name: str,
        *,
        settings: KubeflowSettings,
        namespaces: list[pulumi.Resource],
        after: list[pulumi.Resource],
        block_storage: BlockStorage,
        pipeline_store: S3PipelineStore | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`block_storage`: the class the bundles' claims get (Pipelines' MySQL and SeaweedFS)."""
        super().__init__("ml-platform:kubeflow:KubeflowInstalls", name, None, opts)

        def install(
            suffix: str,
            source: versions.KustomizeSource,
            extra: list[pulumi.Resource] | None = None,
        ) -> k8s.kustomize.v2.Directory:
            return k8s.kustomize.v2.Directory(
                f"{name}-{suffix}",
                directory=source.url,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[*namespaces, *after, *block_storage.ready, *(extra or [])],
                    transforms=[retain_shared_objects, *block_storage.claim_transforms()],
                ),
            )

        if settings.training_operator.enabled:
            self.training_operator = install("training-operator", versions.TRAINING_OPERATOR)
        if settings.notebooks.enabled:
            self.notebook_controller = install("notebook-controller", versions.NOTEBOOK_CONTROLLER)
            # The upstream overlay ships culling off; turn it on with this stack's idle time.
            k8s.apps.v1.DeploymentPatch(
                f"{name}-notebook-culling",
                metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                    name=NOTEBOOK_CONTROLLER_DEPLOYMENT,
                    namespace=names.NOTEBOOK_CONTROLLER,
                    annotations={"pulumi.com/patchForce": "true"},
                ),
                spec=k8s.apps.v1.DeploymentSpecPatchArgs(
                    template=k8s.core.v1.PodTemplateSpecPatchArgs(
                        spec=k8s.core.v1.PodSpecPatchArgs(
                            containers=[
                                k8s.core.v1.ContainerPatchArgs(
                                    name=NOTEBOOK_CONTROLLER_CONTAINER,
                                    env=[
                                        k8s.core.v1.EnvVarPatchArgs(
                                            name=variable["name"], value=variable["value"]
                                        )
                                        for variable in culling_env(settings)
                                    ],
                                )
                            ]
                        )
                    )
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.notebook_controller]),
            )
        if settings.pipelines.enabled:
            cluster_scoped = install("pipelines-cluster", versions.KFP_CLUSTER_RESOURCES)
            associations: list[pulumi.Resource] = []
            if pipeline_store is not None:
                # The roles are associated before any Pipelines pod starts.
                self.pipeline_store = PipelineStoreAccess(
                    f"{name}-pipelines-s3",
                    store=pipeline_store,
                    opts=pulumi.ResourceOptions(parent=self, provider=pipeline_store.provider),
                )
                associations = self.pipeline_store.associations
            self.pipelines = install(
                "pipelines", versions.KFP_PLATFORM_AGNOSTIC, extra=[cluster_scoped, *associations]
            )
            if pipeline_store is not None:
                point_pipelines_at_s3(
                    f"{name}-pipelines-s3",
                    store=pipeline_store,
                    parent=self,
                    after=[self.pipelines, *associations],
                )
        self.register_outputs({})

    def installer_of(self, kind: str) -> pulumi.Resource:
        """What installs the CRD of `kind`; its custom resources must depend on it."""
        installer = {
            "TFJob": self.training_operator,
            "PyTorchJob": self.training_operator,
            "Notebook": self.notebook_controller,
        }.get(kind)
        if installer is None:
            raise ValueError(f"nothing in this stack installs the CRD of {kind}")
        return installer

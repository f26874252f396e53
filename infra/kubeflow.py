"""Kubeflow components, each installed from its pinned upstream kustomization when switched on.

- Training Operator v1 (TFJob, PyTorchJob) in `kubeflow`;
- the notebook controller (without Istio) in `notebook-controller-system`, with idle culling on;
- Kubeflow Pipelines standalone in `kubeflow`; in AWS stacks its objects go to the stack's S3
  bucket (`infra/pipeline_store.py`), elsewhere to the upstream in-cluster object store;
- Katib standalone in `kubeflow`, its MySQL on a block volume, on the system nodes
  (`infra/katib.py`).

The bundles declare objects they share (the `kubeflow` namespace, which this program also creates
with its Pod Security labels), so they are applied through the cluster's installer provider, which
adopts an existing object instead of failing.  Namespaces and CRDs they bring are retained on
delete: switching one component off must not delete a namespace another one lives in, nor every
custom resource of a CRD.

Upstream settings are changed by transforms on the Directory, before its objects are applied, so
each field keeps one owner.  Pulumi runs a component's transforms on every child a remote
component such as `kustomize.v2.Directory` registers, handing over the raw Kubernetes object
(`args.props`, camelCase keys) with its type token (`args.type_`).

Sources (the settings' own comments say which fact comes from where):

- kubeflow/kubeflow@v1.10.0:components/notebook-controller/config/manager/manager.yaml (every
  env var of the `manager` container comes from `valueFrom.configMapKeyRef` of the ConfigMap
  `config`), `config/manager/kustomization.yaml` and `config/manager/params.env` (that ConfigMap
  is generated from params.env, `ENABLE_CULLING=false`), `config/default/kustomization.yaml`
  (namePrefix `notebook-controller-`), `config/overlays/standalone/kustomization.yaml` (merges
  `USE_ISTIO=false`);
- kubeflow/kubeflow@v1.10.0:components/notebook-controller/main.go and
  `controllers/culling_controller.go`: how the controller reads those variables, once at start;
- pulumi/pulumi-kubernetes@94977969:provider/pkg/provider/kustomize/v2/directory.go and
  `provider/pkg/provider/yaml/v2/yaml.go` (the Directory registers each rendered object with the
  object itself as its inputs; read at that commit, the newest in our snapshot, as v4.34.x is
  not in it).
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra import labels, names, versions
from infra.block_storage import BlockStorage
from infra.katib import MYSQL_PASSWORD_LENGTH, configure_katib
from infra.pipeline_store import (
    PipelineStoreAccess,
    S3PipelineStore,
    no_keys_secret,
    use_s3_store,
)
from infra.scheduling import Placement
from infra.settings import KubeflowSettings

RETAINED_TYPES = frozenset(
    {
        "kubernetes:core/v1:Namespace",
        "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition",
    }
)
CONFIG_MAP_TYPE = "kubernetes:core/v1:ConfigMap"
DEPLOYMENT_TYPE = "kubernetes:apps/v1:Deployment"

# kubeflow/kubeflow@v1.10.0:components/notebook-controller/config: the Deployment `deployment`
# with container `manager` (manager/manager.yaml) and the ConfigMap generated as `config`
# (manager/kustomization.yaml), both named with the namePrefix `notebook-controller-`
# (default/kustomization.yaml); kustomize appends a hash of the data to the generated name.
NOTEBOOK_CONTROLLER_DEPLOYMENT = "notebook-controller-deployment"
NOTEBOOK_CONTROLLER_CONTAINER = "manager"
NOTEBOOK_CONTROLLER_CONFIG_PREFIX = "notebook-controller-config-"
# On the controller's pod template: a digest of the culling settings.  The generated ConfigMap
# keeps its name when a transform changes its data (the hash is computed before Pulumi sees it),
# and the controller reads the variables only when it starts, so a changed setting must change
# the pod template to roll the controller.
CULLING_DIGEST_ANNOTATION = f"{labels.PREFIX}/culling-settings"


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


def culling_config(settings: KubeflowSettings) -> dict[str, str]:
    """The notebook controller's culling keys: stop servers idle for the configured time.

    kubeflow/kubeflow@v1.10.0:components/notebook-controller/main.go registers the culler only
    when ENABLE_CULLING is exactly "true"; controllers/culling_controller.go reads CULL_IDLE_TIME
    and IDLENESS_CHECK_PERIOD with strconv.Atoi, both in minutes (a bad period stops the
    controller), defaults "1440" and "1" (params.env sets the same).
    """
    return {
        "ENABLE_CULLING": "true",
        "CULL_IDLE_TIME": str(settings.notebooks.cull_idle_minutes),
        "IDLENESS_CHECK_PERIOD": "1",
    }


def culling_digest(config: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def configure_culling(settings: KubeflowSettings) -> pulumi.ResourceTransform:
    """A transform of the notebook controller's objects that turns culling on.

    The upstream overlay ships culling off, in the generated ConfigMap every `manager` env var
    reads from (`valueFrom.configMapKeyRef`).  Setting the keys there, rather than `value`s on
    the env, keeps each EnvVar with one source: an EnvVar with both `value` and `valueFrom` is
    invalid.  The controller's pod template carries a digest of the keys, so a changed setting
    restarts it.
    """
    config = culling_config(settings)
    digest = culling_digest(config)

    def transform(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
        # A Directory's children arrive as plain objects, with no Output in them.
        props: dict[str, Any] = dict(args.props)
        metadata = props.get("metadata") or {}
        if metadata.get("namespace") != names.NOTEBOOK_CONTROLLER:
            return None
        name = str(metadata.get("name", ""))
        changed = copy.deepcopy(props)
        if args.type_ == CONFIG_MAP_TYPE and name.startswith(NOTEBOOK_CONTROLLER_CONFIG_PREFIX):
            changed["data"] = {**(changed.get("data") or {}), **config}
        elif args.type_ == DEPLOYMENT_TYPE and name == NOTEBOOK_CONTROLLER_DEPLOYMENT:
            template = changed.setdefault("spec", {}).setdefault("template", {})
            template_metadata = template.setdefault("metadata", {})
            template_metadata["annotations"] = {
                **(template_metadata.get("annotations") or {}),
                CULLING_DIGEST_ANNOTATION: digest,
            }
        else:
            return None
        return pulumi.ResourceTransformResult(props=changed, opts=args.opts)

    return transform


class KubeflowInstalls(pulumi.ComponentResource):
    """The enabled Kubeflow components; custom resources depend on `installer_of(kind)`."""

    training_operator: k8s.kustomize.v2.Directory | None = None
    notebook_controller: k8s.kustomize.v2.Directory | None = None
    pipelines: k8s.kustomize.v2.Directory | None = None
    katib: k8s.kustomize.v2.Directory | None = None
    pipeline_store: PipelineStoreAccess | None = None

    def __init__(
        self,
        name: str,
        *,
        settings: KubeflowSettings,
        namespaces: list[pulumi.Resource],
        after: list[pulumi.Resource],
        block_storage: BlockStorage,
        system: Placement,
        pipeline_store: S3PipelineStore | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`block_storage`: the class the bundles' claims get (Pipelines' MySQL and SeaweedFS,
        Katib's MySQL); `system`: where Katib's Deployments run."""
        super().__init__("ml-platform:kubeflow:KubeflowInstalls", name, None, opts)

        def install(
            suffix: str,
            source: versions.KustomizeSource,
            extra: list[pulumi.Resource] | None = None,
            transforms: list[pulumi.ResourceTransform] | None = None,
        ) -> k8s.kustomize.v2.Directory:
            return k8s.kustomize.v2.Directory(
                f"{name}-{suffix}",
                directory=source.url,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[*namespaces, *after, *block_storage.ready, *(extra or [])],
                    transforms=[
                        retain_shared_objects,
                        *block_storage.claim_transforms(),
                        *(transforms or []),
                    ],
                ),
            )

        if settings.training_operator.enabled:
            self.training_operator = install("training-operator", versions.TRAINING_OPERATOR)
        if settings.notebooks.enabled:
            self.notebook_controller = install(
                "notebook-controller",
                versions.NOTEBOOK_CONTROLLER,
                transforms=[configure_culling(settings)],
            )
        if settings.pipelines.enabled:
            cluster_scoped = install("pipelines-cluster", versions.KFP_CLUSTER_RESOURCES)
            before: list[pulumi.Resource] = []
            store_transforms: list[pulumi.ResourceTransform] = []
            if pipeline_store is not None:
                # The roles are associated, and the Secret the API server's key variables read
                # exists, before any Pipelines pod starts.
                self.pipeline_store = PipelineStoreAccess(
                    f"{name}-pipelines-s3",
                    store=pipeline_store,
                    opts=pulumi.ResourceOptions(parent=self, provider=pipeline_store.provider),
                )
                no_keys = no_keys_secret(f"{name}-pipelines-s3", parent=self, after=namespaces)
                before = [*self.pipeline_store.associations, no_keys]
                store_transforms = [use_s3_store(pipeline_store)]
            self.pipelines = install(
                "pipelines",
                versions.KFP_PLATFORM_AGNOSTIC,
                extra=[cluster_scoped, *before],
                transforms=store_transforms,
            )
        if settings.katib.enabled:
            # Katib's controller watches TFJobs only if their CRD exists when it starts.
            operator: list[pulumi.Resource] = (
                [self.training_operator] if self.training_operator else []
            )
            # Letters and digits: MySQL's probes put it on a shell command line, the DB manager
            # in a DSN (infra/katib.py).
            mysql_password = random.RandomPassword(
                f"{name}-katib-mysql-password",
                length=MYSQL_PASSWORD_LENGTH,
                special=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.katib = install(
                "katib",
                versions.KATIB,
                extra=operator,
                transforms=[
                    configure_katib(
                        system,
                        training_operator=bool(operator),
                        mysql_password=mysql_password.result,
                    )
                ],
            )
        self.register_outputs({})

    def installer_of(self, kind: str) -> pulumi.Resource:
        """What installs the CRD of `kind`; its custom resources must depend on it."""
        installer = {
            "TFJob": self.training_operator,
            "PyTorchJob": self.training_operator,
            "Notebook": self.notebook_controller,
            "Experiment": self.katib,
        }.get(kind)
        if installer is None:
            raise ValueError(f"nothing in this stack installs the CRD of {kind}")
        return installer

"""Kubeflow Pipelines' object store on AWS: the stack's S3 bucket, reached with EKS Pod Identity.

The upstream platform-agnostic install keeps pipeline packages, run artifacts and archived logs
in an in-cluster SeaweedFS (which replaced MinIO upstream; `minio-service` is kept as an alias)
with static keys from the `mlpipeline-minio-artifact` Secret.  In AWS stacks everything goes to
`s3://<bucket>/pipelines/` instead, with no access key anywhere:

- `pipelines/<id>`: pipeline packages, written by the API server (`ml-pipeline`);
- `pipelines/artifacts/...`: the pipeline root, where the launcher in each run pod
  (`pipeline-runner`) reads and writes artifacts;
- `pipelines/logs/...`: main-container logs Argo's executor archives from each run pod.

Each of those service accounts, created by the upstream kustomization, gets an IAM role through
a Pod Identity association: read and write below `pipelines/` for the API server and the run
pods, read only for the UI (`ml-pipeline-ui`).  Upstream objects are changed by a transform on
the Directory installing them (`use_s3_store`), before they are applied, so each field has one
owner: a separate patch resource would fight the Directory over its fields after every refresh.
The in-cluster SeaweedFS keeps running
in AWS stacks, unused: removing it would take a different upstream overlay.  The `local` stack
keeps the upstream object store unchanged.

Sources (the settings' own comments say which key comes from where):

- kubeflow/pipelines@2.17.0:backend/src/apiserver/client_manager/client_manager.go (as changed
  by PR #12512, the fix for #12508 "2.15.0 breaks IRSA"): the API server's object store needs
  `ObjectStoreConfig.Host` and the bucket; with both keys empty it uses the AWS SDK's default
  credential chain (`loadAWSConfig`), and a failed bucket check is only a warning;
- kubeflow/pipelines@2.17.0:backend/src/apiserver/main.go (`viper.AllowEmptyEnv(true)`) and
  kubeflow/pipelines@2.17.0:backend/src/apiserver/config/config.json (defaults
  `AccessKey: minio`, `SecretAccessKey: minio123`, `PipelinePath: pipelines`,
  `DEFAULTPIPELINERUNNERSERVICEACCOUNT: pipeline-runner`): an unset key variable falls back to
  the MinIO default, so the key variables must exist and be empty;
- kubeflow/pipelines@2.17.0:manifests/kustomize/base/pipeline/ml-pipeline-apiserver-deployment.yaml
  and `ml-pipeline-ui-deployment.yaml`: which env vars upstream sets with `value` and which with
  `valueFrom` (each variable set here keeps upstream's field:
  tests/upstream/kubeflow-pipelines-deployments.yaml); the objects changed here, as the install
  renders them, are in tests/upstream/kubeflow-pipelines-rendered.yaml;
- kubeflow/pipelines@2.17.0:backend/src/v2/config/env.go and `backend/src/v2/config/s3.go`,
  `backend/src/v2/objectstore/object_store.go`: the `kfp-launcher` ConfigMap's
  `defaultPipelineRoot` and `providers` (`s3.default` with `credentials.fromEnv: true` opens the
  bucket with the SDK's default chain); kubeflow/website
  `content/en/docs/components/pipelines/operator-guides/configure-object-store.md`;
- kubeflow/pipelines@2.17.0:manifests/kustomize/third-party/argo/base/
  workflow-controller-configmap-patch.yaml (`artifactRepository`) and
  argoproj/argo-workflows@v4.0.5:workflow/artifacts/s3/s3.go (`useSDKCreds`: credentials from
  the AWS SDK chain, used only when no static keys are given);
- kubeflow/pipelines@2.17.0:frontend/server/configs.ts (`AWS_REGION`, `AWS_S3_ENDPOINT`,
  `AWS_SSL`, `ARGO_ARCHIVE_LOGS`, `ARGO_ARCHIVE_ARTIFACTORY`, `ARGO_ARCHIVE_BUCKETNAME`,
  `ARGO_KEYFORMAT`), kubeflow/pipelines@2.17.0:frontend/server/workflow-helper.ts (the
  placeholders the UI substitutes in ARGO_KEYFORMAT), and PR #8651 (the UI server takes S3
  credentials from the AWS JS SDK's provider chain when no keys are set);
  tests/upstream/kubeflow-pipelines-ui.yaml records what the UI reads.

Known problem: kubeflow/pipelines#12960, the 2.16 API server hanging at "Initializing Object store
client..." with IRSA and empty keys, when the SDK finds no credentials and retries the instance
metadata service (which our nodes' hop limit of 1 keeps from pods).  Its fix (#13092) was closed
unmerged; whether 2.17.0 still hangs is not established.  With Pod Identity in place the chain
finds the agent's credentials first, so the associations are created before the pods that use
them: before the install.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import yaml

from infra import labels, names
from infra.artifact_store import PIPELINES_PREFIX, prefix_access_policy
from infra.workload_identity import pod_identity_role

NAMESPACE = names.KUBEFLOW  # where the standalone install puts Pipelines' services
API_SERVER_ACCOUNT = "ml-pipeline"
UI_ACCOUNT = "ml-pipeline-ui"
# What a run's pods (the launcher and Argo's executor in each task pod) run as in standalone mode,
# in names.PIPELINE_RUNS (kubeflow/pipelines@2.17.0:backend/src/apiserver/config/config.json
# `DEFAULTPIPELINERUNNERSERVICEACCOUNT`).
RUNNER_ACCOUNT = "pipeline-runner"
# Each account that reaches the bucket, and whether it writes.
ACCOUNTS: dict[str, bool] = {API_SERVER_ACCOUNT: True, RUNNER_ACCOUNT: True, UI_ACCOUNT: False}

API_SERVER_DEPLOYMENT = "ml-pipeline"
API_SERVER_CONTAINER = "ml-pipeline-api-server"
UI_DEPLOYMENT = "ml-pipeline-ui"
UI_CONTAINER = "ml-pipeline-ui"
INSTALL_CONFIG = "pipeline-install-config"
LAUNCHER_CONFIG = "kfp-launcher"
WORKFLOW_CONTROLLER_CONFIG = "workflow-controller-configmap"
CONFIG_MAP_TYPE = "kubernetes:core/v1:ConfigMap"
DEPLOYMENT_TYPE = "kubernetes:apps/v1:Deployment"
# On the API server's pod template: a digest of the `pipeline-install-config` keys set here.
STORE_DIGEST_ANNOTATION = f"{labels.PREFIX}/object-store-settings"
# Holds the API server's two key variables, empty (see `api_server_env`).
NO_KEYS_SECRET = "ml-pipeline-s3-no-static-keys"
KEY_VARIABLES = {
    "OBJECTSTORECONFIG_ACCESSKEY": "accesskey",
    "OBJECTSTORECONFIG_SECRETACCESSKEY": "secretkey",
}

PACKAGES_PATH = PIPELINES_PREFIX.rstrip("/")  # the API server's `PipelinePath`
ARTIFACTS_PREFIX = f"{PIPELINES_PREFIX}artifacts"
LOGS_PREFIX = f"{PIPELINES_PREFIX}logs"
# Where Argo's executor archives each run pod's main-container log: upstream's layout
# (kubeflow/pipelines@2.17.0:manifests/kustomize/third-party/argo/base/
# workflow-controller-configmap-patch.yaml, `private-artifacts/{{workflow.namespace}}/...`) with
# `pipelines/logs/` in place of `private-artifacts/`.  The UI finds archived logs with the same
# format (ARGO_KEYFORMAT), and substitutes only the placeholders used here, each once
# (kubeflow/pipelines@2.17.0:frontend/server/workflow-helper.ts createPodLogsMinioRequestConfig).
LOG_KEY_FORMAT = (
    f"{LOGS_PREFIX}/{{{{workflow.namespace}}}}/{{{{workflow.name}}}}/"
    "{{workflow.creationTimestamp.Y}}/{{workflow.creationTimestamp.m}}/"
    "{{workflow.creationTimestamp.d}}/{{pod.name}}"
)


def s3_endpoint(region: str) -> str:
    """The regional S3 endpoint, without a scheme (every client here adds https itself)."""
    return f"s3.{region}.amazonaws.com"


def pipeline_root(bucket: str) -> str:
    return f"s3://{bucket}/{ARTIFACTS_PREFIX}"


def launcher_config(bucket: str, region: str) -> dict[str, str]:
    """The `kfp-launcher` ConfigMap's data: the pipeline root and the SDK-credentials provider."""
    providers = {
        "s3": {
            "default": {
                "endpoint": s3_endpoint(region),
                "region": region,
                "disableSSL": False,
                # Virtual-hosted requests, as AWS recommends (the upstream default is path style).
                "forcePathStyle": False,
                # No secretRef: the launcher opens the bucket with the SDK's default chain, which
                # finds the Pod Identity credentials of the run pod's account.
                "credentials": {"fromEnv": True},
            }
        }
    }
    return {
        "defaultPipelineRoot": pipeline_root(bucket),
        "providers": yaml.safe_dump(providers, sort_keys=False),
    }


def artifact_repository(bucket: str, region: str) -> str:
    """Argo's default artifact repository (`workflow-controller-configmap`), used for log archives.

    It replaces upstream's SeaweedFS repository, whose `accessKeySecret`/`secretKeySecret` would
    take precedence over `useSDKCreds`; the key format keeps upstream's layout under `pipelines/`.
    """
    repository = {
        "archiveLogs": True,
        "s3": {
            "endpoint": s3_endpoint(region),
            "bucket": bucket,
            "region": region,
            "insecure": False,
            "useSDKCreds": True,
            "keyFormat": LOG_KEY_FORMAT,
        },
    }
    return yaml.safe_dump(repository, sort_keys=False)


def api_server_env(region: str) -> list[dict[str, Any]]:
    """The API server's object-store variables (viper reads `ObjectStoreConfig.X` from them).

    Host, port and TLS replace upstream's `seaweedfs.kubeflow:9000` over plain HTTP; the bucket
    comes from `pipeline-install-config` as upstream has it.  The two key variables must exist
    and be empty: unset, they would fall back to config.json's MinIO keys; upstream takes them
    from `mlpipeline-minio-artifact`, so they point at a Secret holding two empty values.
    """
    return [
        {"name": "OBJECTSTORECONFIG_HOST", "value": s3_endpoint(region)},
        {"name": "OBJECTSTORECONFIG_PORT", "value": "443"},
        {"name": "OBJECTSTORECONFIG_SECURE", "value": "true"},
        {"name": "OBJECTSTORECONFIG_REGION", "value": region},
        # The default already; explicit because the IAM policies name this prefix.
        {"name": "OBJECTSTORECONFIG_PIPELINEPATH", "value": PACKAGES_PATH},
        *(
            {"name": variable, "valueFrom": {"secretKeyRef": {"name": NO_KEYS_SECRET, "key": key}}}
            for variable, key in KEY_VARIABLES.items()
        ),
    ]


def ui_env(bucket: pulumi.Input[str], region: str) -> list[dict[str, Any]]:
    """The UI server's S3 settings; with no AWS key variables it uses the SDK's provider chain."""
    return [
        {"name": "AWS_REGION", "value": region},
        {"name": "AWS_S3_ENDPOINT", "value": s3_endpoint(region)},
        {"name": "AWS_SSL", "value": "true"},
        # Where Argo archived a pod's logs, for when the Workflow is gone: the bucket and the
        # very key format Argo archives with (kubeflow/pipelines@2.17.0:frontend/server/configs.ts
        # reads ARGO_KEYFORMAT; ARGO_ARCHIVE_PREFIX is no longer read since 2.3.0).
        {"name": "ARGO_ARCHIVE_LOGS", "value": "true"},
        {"name": "ARGO_ARCHIVE_ARTIFACTORY", "value": "s3"},
        {"name": "ARGO_ARCHIVE_BUCKETNAME", "value": bucket},
        {"name": "ARGO_KEYFORMAT", "value": LOG_KEY_FORMAT},
    ]


def access_policy(bucket_arn: str, *, write: bool) -> dict[str, Any]:
    """Read (and with `write`, write) below `pipelines/` of the bucket, and nothing else."""
    return prefix_access_policy(
        bucket_arn, read=[PIPELINES_PREFIX], write=[PIPELINES_PREFIX] if write else []
    )


@dataclass(frozen=True)
class S3PipelineStore:
    """Where an AWS stack's Pipelines keep their objects, and what reaching them takes."""

    bucket: pulumi.Input[str]  # the bucket's name
    bucket_arn: pulumi.Input[str]
    region: str
    cluster_name: pulumi.Input[str]
    provider: aws.Provider  # the stack's explicit AWS provider


class PipelineStoreAccess(pulumi.ComponentResource):
    """One Pod Identity role per Pipelines service account, limited to `pipelines/`."""

    def __init__(
        self, name: str, *, store: S3PipelineStore, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ml-platform:kubeflow:PipelineStoreAccess", name, None, opts)
        self.associations: list[pulumi.Resource] = []
        arns: dict[str, pulumi.Output[str]] = {}
        for account, write in ACCOUNTS.items():
            namespace = names.PIPELINE_RUNS if account == RUNNER_ACCOUNT else NAMESPACE
            policy = pulumi.Output.from_input(store.bucket_arn).apply(
                functools.partial(access_policy, write=write)
            )
            role, association = pod_identity_role(
                f"{name}-{account}",
                namespace=namespace,
                service_account=account,
                policy=policy,
                cluster_name=store.cluster_name,
                description=(
                    f"Kubeflow Pipelines {namespace}/{account}: "
                    f"{'read-write' if write else 'read-only'} {PIPELINES_PREFIX}"
                ),
                parent=self,
            )
            self.associations.append(association)
            arns[account] = role.role.arn
        self.register_outputs({"roleArns": arns})


def no_keys_secret(
    name: str, *, parent: pulumi.Resource, after: list[pulumi.Resource]
) -> k8s.core.v1.Secret:
    """The Secret the API server's two key variables read: both keys, empty (`api_server_env`).

    Created before the install, whose API server Deployment names it once transformed.
    """
    return k8s.core.v1.Secret(
        f"{name}-no-keys",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=NO_KEYS_SECRET, namespace=NAMESPACE),
        string_data=dict.fromkeys(KEY_VARIABLES.values(), ""),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=after),
    )


def settings_digest(settings: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _with_env(container: dict[str, Any], variables: list[dict[str, Any]]) -> None:
    """Set `variables` on `container`: each replaces upstream's EnvVar of its name, in place
    (so the order upstream gives, which `$(VAR)` references depend on, is kept); new ones last."""
    ours = {variable["name"]: variable for variable in variables}
    kept = [ours.pop(variable["name"], variable) for variable in container.get("env") or []]
    container["env"] = [*kept, *ours.values()]


def _container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
    for container in containers or []:
        if container.get("name") == name:
            return dict(container)
    raise ValueError(
        f"the Pipelines install's Deployment {NAMESPACE}/{deployment['metadata']['name']} has no "
        f"container {name!r}: read its manifest at the new kubeflow/pipelines ref and update "
        "infra/pipeline_store.py"
    )


def use_s3_store(store: S3PipelineStore) -> pulumi.ResourceTransform:
    """A transform of the Pipelines install's objects that keeps their objects in `store`.

    It changes, before they are applied:

    - ConfigMap `pipeline-install-config`: `bucketName` (the API server reads it, through
      `valueFrom`, when it starts);
    - ConfigMap `kfp-launcher`: `defaultPipelineRoot` and `providers` (each run's driver and
      launcher read it when they start, kubeflow/pipelines@2.17.0:backend/src/v2/config/env.go
      `FromConfigMap`);
    - ConfigMap `workflow-controller-configmap`: `artifactRepository` (the Argo controller
      watches its ConfigMap and reloads it, argoproj/argo-workflows@v4.0.5:
      workflow/controller/controller.go `runConfigMapWatcher`);
    - Deployments `ml-pipeline` and `ml-pipeline-ui`: their containers' object-store variables,
      each with the field (`value` or `valueFrom`) upstream sets it with.  The API server's pod
      template also carries a digest of the `pipeline-install-config` keys set here, so a changed
      bucket restarts it: the ConfigMap's name does not change, and env is read only at start.

    Every other key and variable stays upstream's.
    """
    bucket = pulumi.Output.from_input(store.bucket)
    region = store.region
    launcher = bucket.apply(lambda b: launcher_config(b, region))
    install_config: dict[str, pulumi.Input[str]] = {"bucketName": bucket}
    config_maps: dict[str, dict[str, pulumi.Input[str]]] = {
        INSTALL_CONFIG: install_config,
        LAUNCHER_CONFIG: {key: launcher[key] for key in ("defaultPipelineRoot", "providers")},
        WORKFLOW_CONTROLLER_CONFIG: {
            "artifactRepository": bucket.apply(lambda b: artifact_repository(b, region))
        },
    }
    containers: dict[str, tuple[str, list[dict[str, Any]]]] = {
        API_SERVER_DEPLOYMENT: (API_SERVER_CONTAINER, api_server_env(region)),
        UI_DEPLOYMENT: (UI_CONTAINER, ui_env(bucket, region)),
    }
    api_server_digest = bucket.apply(lambda b: settings_digest({"bucketName": b}))

    def transform(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
        props: dict[str, Any] = dict(args.props)
        metadata = props.get("metadata") or {}
        if metadata.get("namespace") != NAMESPACE:
            return None
        name = str(metadata.get("name", ""))
        changed = copy.deepcopy(props)
        if args.type_ == CONFIG_MAP_TYPE and name in config_maps:
            changed["data"] = {**(changed.get("data") or {}), **config_maps[name]}
        elif args.type_ == DEPLOYMENT_TYPE and name in containers:
            container_name, variables = containers[name]
            pod = changed["spec"]["template"]
            container = _container(changed, container_name)
            _with_env(container, variables)
            pod["spec"]["containers"] = [
                container if c.get("name") == container_name else c
                for c in pod["spec"]["containers"]
            ]
            if name == API_SERVER_DEPLOYMENT:
                pod_metadata = pod.setdefault("metadata", {})
                pod_metadata["annotations"] = {
                    **(pod_metadata.get("annotations") or {}),
                    STORE_DIGEST_ANNOTATION: api_server_digest,
                }
        else:
            return None
        return pulumi.ResourceTransformResult(props=changed, opts=args.opts)

    return transform

"""Assembles the platform's components from the stack settings, in dependency order."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import gpu_sharing, images, labels, names, versions
from infra.addons import ClusterAddons, addon_versions
from infra.artifact_store import (
    ArtifactStore,
    prefix_access_policy,
    team_prefixes,
    workload_prefixes,
)
from infra.autoscaler import ClusterAutoscaler
from infra.binpack_scheduler import BinPackingScheduler
from infra.block_storage import BlockStorage
from infra.cluster import EksCluster
from infra.efs import SharedFileSystem
from infra.existing_cluster import ExistingCluster
from infra.gpu_operator import GpuOperator
from infra.iam import ServiceRole, managed_policy
from infra.image_mirror import mirrored
from infra.images import BuiltImage
from infra.katib_network import katib_policy_specs
from infra.kubeflow import KubeflowInstalls
from infra.load_balancer_controller import LoadBalancerController, needs_controller
from infra.log_shipping import LogShipping
from infra.metrics_server import MetricsServer
from infra.monitoring import Monitoring
from infra.namespaces import PlatformNamespaces, namespace_specs
from infra.network import Network
from infra.node_pool import NodePool, PoolSpec
from infra.operator_metrics import TrainingOperatorMetrics
from infra.pipeline_store import S3PipelineStore
from infra.pipelines_access import PipelinesAccess
from infra.priorities import PriorityClasses
from infra.pull_through_cache import DockerHubCache
from infra.scheduling import SYSTEM_POOL, placement
from infra.settings import AwsSettings, Settings
from infra.staging import DatasetStaging
from infra.team_access import TeamAccess, TeamAccessEntries
from infra.team_network import NamespaceNetworkPolicies, baseline_specs, policy_specs
from infra.team_quota import TeamQuota
from infra.volumes import SharedVolumes, VolumeKey
from infra.workload_identity import TEAM_ACCOUNT, WorkloadIdentity
from workloads.custom_resources import ONE_SHOT_KINDS, TeamWorkload
from workloads.plan import (
    ensure_schedulable,
    ensure_within_quota,
    plan_workloads,
)
from workloads.served_model import ServedModel
from workloads.serving import MODEL_PORTS, ingress_policy_specs


@dataclass
class AwsLayer:
    """What the AWS stacks build below Kubernetes."""

    network: Network
    cluster: EksCluster
    # The stack's explicit AWS provider, for AWS resources of later components.
    provider: aws.Provider
    node_pools: dict[str, NodePool] = field(default_factory=dict)
    # What must run before anything that starts pods (Helm releases that wait for readiness).
    ready: list[pulumi.Resource] = field(default_factory=list)
    # The metrics-server add-on, which serves the autoscalers' resource metrics.
    metrics_server: aws.eks.Addon | None = None
    file_system: SharedFileSystem | None = None
    artifacts: ArtifactStore | None = None
    training_image: pulumi.Output[str] | None = None
    inference_image: pulumi.Output[str] | None = None
    # The ECR cache the nodes pull Docker Hub images through (`aws.pullThroughCache`).
    docker_hub_cache: DockerHubCache | None = None


@dataclass(frozen=True)
class Platform:
    """Handles on the components, for stack outputs and for tests."""

    settings: Settings
    kubernetes: k8s.Provider
    namespaces: PlatformNamespaces
    volumes: SharedVolumes
    aws: AwsLayer | None
    monitoring: Monitoring | None


def _katib_network(
    name: str,
    settings: Settings,
    namespaces: PlatformNamespaces,
    on_cluster: pulumi.ResourceOptions,
) -> None:
    """Katib's pods only: nothing else in `kubeflow` is selected (infra/katib_network.py)."""
    if not settings.kubeflow.katib.enabled:
        return
    NamespaceNetworkPolicies(
        f"{name}-katib-network",
        namespace=namespaces.namespaces[names.KUBEFLOW],
        namespace_name=names.KUBEFLOW,
        specs=katib_policy_specs([team.name for team in settings.teams]),
        opts=on_cluster,
    )


def build_platform(settings: Settings) -> Platform:
    """Register every component of the platform for one stack."""
    name = settings.cluster.name
    # Declared workloads are built and checked first: one that no pool can run stops the
    # program before anything is registered.
    planned = plan_workloads(settings)
    ensure_schedulable(planned, settings, pulumi.get_stack())
    ensure_within_quota(planned, settings, pulumi.get_stack())

    aws_layer: AwsLayer | None = None
    if settings.cluster.mode == "existing":
        existing = ExistingCluster(name, settings.cluster)
        kubernetes, installer = existing.provider, existing.installer_provider
    else:
        assert settings.aws is not None  # the settings model requires it in mode `eks`
        aws_layer = build_aws_layer(settings, settings.aws)
        kubernetes = aws_layer.cluster.provider
        installer = aws_layer.cluster.installer_provider

    on_cluster = pulumi.ResourceOptions(provider=kubernetes)
    namespaces = PlatformNamespaces(
        f"{name}-namespaces",
        namespace_specs(settings),
        settings.cluster.kubernetes_version,
        opts=on_cluster,
    )
    for team in settings.teams:
        TeamQuota(
            f"{name}-{team.name}-quota",
            settings=settings,
            team=team,
            namespace=namespaces.namespaces[team.name],
            opts=on_cluster,
        )
        TeamAccess(
            f"{name}-{team.name}-access",
            team=team,
            namespace=namespaces.namespaces[team.name],
            opts=on_cluster,
        )
        # For work the team runs itself (kubectl, pipelines): no token, the team's S3 access.
        workload_identity(
            f"{name}-{team.name}-{TEAM_ACCOUNT}",
            namespace=namespaces.namespaces[team.name],
            namespace_name=team.name,
            service_account=TEAM_ACCOUNT,
            app=TEAM_ACCOUNT,
            prefixes=team_prefixes(team.artifacts, team.name),
            description=f"Team {team.name}: its own jobs",
            kubernetes=kubernetes,
            aws_layer=aws_layer,
        )
        NamespaceNetworkPolicies(
            f"{name}-{team.name}-network",
            namespace=namespaces.namespaces[team.name],
            namespace_name=team.name,
            specs=policy_specs(settings, team, model_ports=MODEL_PORTS),
            opts=on_cluster,
        )
    _katib_network(name, settings, namespaces, on_cluster)
    if settings.serving.enabled:
        NamespaceNetworkPolicies(
            f"{name}-serving-network",
            namespace=namespaces.namespaces[names.SERVING],
            namespace_name=names.SERVING,
            specs={**baseline_specs(), **ingress_policy_specs(settings)},
            opts=on_cluster,
        )
    if aws_layer and any(t.access.engineers or t.access.viewers for t in settings.teams):
        TeamAccessEntries(
            f"{name}-team-access",
            cluster=aws_layer.cluster.cluster,
            teams=settings.teams,
            opts=pulumi.ResourceOptions(provider=aws_layer.provider),
        )
    if any(team.access.pipelines for team in settings.teams):
        PipelinesAccess(
            f"{name}-pipelines-access",
            teams=settings.teams,
            namespaces=namespaces.namespaces,
            opts=on_cluster,
        )
    ready = aws_layer.ready if aws_layer else []
    # The class of every block volume (Prometheus, Alertmanager, Pipelines); in AWS stacks it is
    # created here, after the EBS CSI add-on, and claims wait for it.
    block_storage = BlockStorage(
        f"{name}-block-storage", settings=settings, after=ready, opts=on_cluster
    )
    monitoring: Monitoring | None = None
    if settings.monitoring.enabled:
        monitoring = Monitoring(
            f"{name}-monitoring",
            settings=settings,
            namespace=namespaces.namespaces[names.MONITORING],
            placement=placement(settings, SYSTEM_POOL),
            block_storage=block_storage,
            after=ready,
            aws_cluster=aws_layer.cluster.cluster if aws_layer else None,
            # AWS resources (Alertmanager's SNS role) with the stack's AWS provider.
            opts=pulumi.ResourceOptions(
                providers=[kubernetes, *([aws_layer.provider] if aws_layer else [])]
            ),
        )
    if settings.logging.enabled:
        LogShipping(
            f"{name}-logging",
            settings=settings.logging,
            cluster_name=name,
            namespace=namespaces.namespaces[names.LOGGING],
            aws_cluster=aws_layer.cluster.cluster if aws_layer else None,
            region=settings.aws.region if settings.aws else None,
            monitoring=monitoring.release if monitoring else None,
            after=ready,
            kubernetes=kubernetes,
            opts=pulumi.ResourceOptions(
                providers=[kubernetes, *([aws_layer.provider] if aws_layer else [])]
            ),
        )
    # Internal NLBs of served models come from the AWS Load Balancer Controller.  It is installed
    # only when a model asks for one (needs_controller): no idle controller otherwise.
    load_balancer: LoadBalancerController | None = None
    if aws_layer and settings.aws and needs_controller(settings):
        load_balancer = LoadBalancerController(
            f"{name}-lb-controller",
            cluster=aws_layer.cluster.cluster,
            cluster_name=name,
            region=settings.aws.region,
            vpc_id=aws_layer.network.vpc_id,
            placement=placement(settings, SYSTEM_POOL),
            monitoring=monitoring.release if monitoring else None,
            after=ready,
            kubernetes=kubernetes,
            opts=pulumi.ResourceOptions(providers=[kubernetes, aws_layer.provider]),
        )
    metrics = metrics_source(settings, aws_layer, on_cluster)
    build_gpu_scheduling(
        settings, namespaces, on_cluster, ready, monitoring.release if monitoring else None
    )
    volumes, staged = build_storage(settings, namespaces, on_cluster, aws_layer)
    installs = KubeflowInstalls(
        f"{name}-kubeflow",
        settings=settings.kubeflow,
        namespaces=list(namespaces.namespaces.values()),
        after=ready,
        block_storage=block_storage,
        system=placement(settings, SYSTEM_POOL),
        # AWS stacks keep Pipelines' objects in their artifact bucket; others in-cluster.
        pipeline_store=S3PipelineStore(
            bucket=aws_layer.artifacts.bucket.bucket,
            bucket_arn=aws_layer.artifacts.bucket.arn,
            region=settings.aws.region,
            cluster_name=aws_layer.cluster.cluster.name,
            provider=aws_layer.provider,
        )
        if aws_layer and aws_layer.artifacts and settings.aws
        else None,
        opts=pulumi.ResourceOptions(provider=installer),
    )
    if monitoring and installs.training_operator:
        TrainingOperatorMetrics(
            f"{name}-training-operator-metrics",
            operator=installs.training_operator,
            monitoring=monitoring.release,
            opts=on_cluster,
        )
    training_image = aws_layer.training_image if aws_layer else None
    for workload in plan_workloads(settings, training_image):
        team_claims: list[pulumi.Resource] = [
            claim for (_, ns), claim in volumes.claims.items() if ns == workload.team
        ]
        identity = workload_identity(
            f"{name}-{workload.team}-{workload.service_account}",
            namespace=namespaces.namespaces[workload.team],
            namespace_name=workload.team,
            service_account=workload.service_account,
            app=workload.name,
            prefixes=workload_prefixes(workload.artifacts, workload.team, workload.name),
            description=f"{workload.kind} {workload.team}/{workload.name}",
            kubernetes=kubernetes,
            aws_layer=aws_layer,
        )
        TeamWorkload(
            f"{name}-{workload.team}-{workload.name}",
            workload,
            installer=installs.installer_of(workload.kind),
            # Pod Identity injects credentials when a pod is created: the association first.
            # A training job also waits for the staged data: the provider's create of the
            # staging Job returns only once it completed (tests/test_one_shot_jobs.py).  Images
            # from the Docker Hub cache need its rule.
            needs=[
                *team_claims,
                *identity.ready,
                *(staged if workload.kind in ONE_SHOT_KINDS else []),
                *([aws_layer.docker_hub_cache] if aws_layer and aws_layer.docker_hub_cache else []),
            ],
            opts=on_cluster,
        )
    inference_image = (
        aws_layer.inference_image
        if aws_layer and aws_layer.inference_image
        else settings.serving.inference_image
    )
    for model in settings.serving.models:
        ServedModel(
            f"{name}-serve-{model.name}",
            settings=settings,
            model=model,
            inference_image=inference_image,
            # The models' claim, and the nodes the servers run on (a component's own
            # `depends_on` would not hold its Deployments back).
            needs=[volumes.claims[("models", names.SERVING)], *ready],
            monitoring=monitoring.release if monitoring else None,
            load_balancer=load_balancer.release if load_balancer else None,
            metrics_server=metrics,
            opts=on_cluster,
        )
    return Platform(
        settings=settings,
        kubernetes=kubernetes,
        namespaces=namespaces,
        volumes=volumes,
        aws=aws_layer,
        monitoring=monitoring,
    )


def metrics_source(
    settings: Settings, aws_layer: AwsLayer | None, on_cluster: pulumi.ResourceOptions
) -> pulumi.Resource | None:
    """What serves the resource metrics API the autoscalers read, where the program installs it.

    AWS stacks: the EKS add-on.  An existing cluster: the pinned chart when
    `cluster.metricsServer.source` is `install`, else nothing (the cluster runs its own).
    """
    if aws_layer is not None:
        return aws_layer.metrics_server
    chosen = settings.cluster.metrics_server
    if not settings.cluster.installs_metrics_server:
        return None
    return MetricsServer(
        f"{settings.cluster.name}-metrics-server",
        kubelet_insecure_tls=chosen.kubelet_insecure_tls,
        placement=placement(settings, SYSTEM_POOL),
        opts=on_cluster,
    ).release


def workload_identity(
    name: str,
    *,
    namespace: k8s.core.v1.Namespace,
    namespace_name: str,
    service_account: str,
    app: str,
    prefixes: tuple[list[str], list[str]],
    description: str,
    kubernetes: k8s.Provider,
    aws_layer: AwsLayer | None,
) -> WorkloadIdentity:
    """A ServiceAccount, with an S3 role for its (readable, writable) artifact prefixes if any."""
    read, write = prefixes
    policy = None
    if read:
        # The settings allow artifact access only in mode `eks`, where the bucket exists.
        assert aws_layer is not None
        assert aws_layer.artifacts is not None
        policy = aws_layer.artifacts.bucket.arn.apply(
            lambda arn: prefix_access_policy(arn, read=read, write=write)
        )
    return WorkloadIdentity(
        name,
        namespace=namespace_name,
        service_account=service_account,
        labels={labels.TEAM: namespace_name, "app.kubernetes.io/name": app},
        policy=policy,
        cluster_name=aws_layer.cluster.cluster.name if aws_layer else None,
        description=description,
        after=[namespace],
        opts=pulumi.ResourceOptions(
            providers=[kubernetes, *([aws_layer.provider] if aws_layer else [])]
        ),
    )


def build_storage(
    settings: Settings,
    namespaces: PlatformNamespaces,
    on_cluster: pulumi.ResourceOptions,
    aws_layer: AwsLayer | None,
) -> tuple[SharedVolumes, list[pulumi.Resource]]:
    """The shared volumes' claims in each namespace that mounts them, and dataset staging.

    Returns the volumes and what stages the data (the staging Job, if any), for the training
    jobs to wait for.
    """
    storage = settings.storage
    teams = [team.name for team in settings.teams]
    staging = storage.staging.enabled
    # Pipeline runs mount `datasets` (prepare-data writes it) and `models` (promote writes it)
    # in the namespace Pipelines runs their pods in (training/pipeline.py).
    runs = [names.PIPELINE_RUNS] if settings.kubeflow.pipelines.enabled else []
    consumers: dict[VolumeKey, list[str]] = {
        "datasets": [*([names.PLATFORM] if staging else []), *teams, *runs],
        "models": [*teams, *([names.SERVING] if settings.serving.enabled else []), *runs],
        "workspace": teams,
    }
    volumes = SharedVolumes(
        f"{settings.cluster.name}-volumes",
        storage=storage,
        mode=settings.storage_mode,
        consumers=consumers,
        namespaces=namespaces,
        efs=aws_layer.file_system if aws_layer else None,
        opts=on_cluster,
    )
    if not staging:
        return volumes, []
    stager = DatasetStaging(
        f"{settings.cluster.name}-staging",
        storage=storage,
        claim=volumes.claims[("datasets", names.PLATFORM)],
        placement=placement(settings, SYSTEM_POOL),
        after=aws_layer.ready if aws_layer else [],
        image=mirrored(settings, versions.TENSORFLOW_IMAGE),
        opts=on_cluster,
    )
    return volumes, [stager.job]


def build_gpu_scheduling(
    settings: Settings,
    namespaces: PlatformNamespaces,
    on_cluster: pulumi.ResourceOptions,
    ready: list[pulumi.Resource],
    monitoring: pulumi.Resource | None,
) -> None:
    """Priority classes, the GPU Operator (with GPU pools) and the bin-packing scheduler.

    `ready`: what must run before anything that starts pods; `monitoring`: the monitoring release.
    """
    name = settings.cluster.name
    PriorityClasses(f"{name}-priorities", opts=on_cluster)
    pools = settings.node_pools.gpu
    if pools:
        GpuOperator(
            f"{name}-gpu-operator",
            settings,
            namespaces.namespaces[names.GPU],
            # The DCGM exporter's ServiceMonitor needs the monitoring CRDs first.
            after=[*ready, *([monitoring] if monitoring else [])],
            opts=on_cluster,
        )
    if settings.gpu.bin_packing_scheduler:
        BinPackingScheduler(
            f"{name}-binpack",
            kubernetes_minor=settings.cluster.kubernetes_version,
            gpu_resources=[gpu_sharing.GPU, *(gpu_sharing.resource_name(p) for p in pools)],
            placement=placement(settings, SYSTEM_POOL),
            after=ready,
            monitoring=monitoring,
            opts=on_cluster,
        )


def build_aws_layer(settings: Settings, aws_settings: AwsSettings) -> AwsLayer:
    """VPC, EKS control plane, add-ons, node pools and their autoscaler."""
    name = settings.cluster.name
    minor = settings.cluster.kubernetes_version
    provider = aws.Provider(
        f"{name}-aws",
        region=aws_settings.region,
        default_tags={
            "tags": {
                "ml-platform/cluster": name,
                "ml-platform/stack": pulumi.get_stack(),
                **aws_settings.tags,
            }
        },
    )
    on_aws = pulumi.ResourceOptions(provider=provider)

    network = Network(f"{name}-network", aws_settings, name, opts=on_aws)
    cluster = EksCluster(
        name, settings.cluster, aws_settings, network.private_subnet_ids, opts=on_aws
    )
    pinned_addons = addon_versions(aws_settings, minor)
    addons = ClusterAddons(f"{name}-addons", cluster.cluster, pinned_addons, opts=on_aws)
    node_role = ServiceRole(
        f"{name}-nodes",
        service="ec2.amazonaws.com",
        managed_policies=[
            managed_policy("AmazonEKSWorkerNodePolicy"),
            managed_policy("AmazonEC2ContainerRegistryPullOnly"),
        ],
        description=f"Nodes of EKS cluster {name}",
        opts=on_aws,
    )
    layer = AwsLayer(network=network, cluster=cluster, provider=provider)
    specs = [
        PoolSpec.system(settings.node_pools.system),
        *(PoolSpec.gpu(pool) for pool in settings.node_pools.gpu),
    ]
    for spec in specs:
        layer.node_pools[spec.name] = NodePool(
            f"{name}-{spec.name}",
            spec,
            cluster_name=cluster.cluster.name,
            node_role_arn=node_role.role.arn,
            subnet_ids=network.private_subnet_ids,
            after=[*addons.before_nodes, node_role],
            opts=on_aws,
        )
    system_pool = layer.node_pools["system"]
    coredns = addons.add_coredns(after=[system_pool])
    layer.metrics_server = addons.add_metrics_server(after=[system_pool])
    layer.ready = [system_pool, coredns, addons.add_ebs_csi(after=[system_pool])]
    if aws_settings.pull_through_cache:
        # Pods that pull Docker Hub images through the cache start after its rule exists.
        layer.docker_hub_cache = DockerHubCache(
            f"{name}-docker-hub-cache",
            settings=aws_settings.pull_through_cache,
            region=aws_settings.region,
            node_role=node_role.role,
            opts=on_aws,
        )
        layer.ready.append(layer.docker_hub_cache)
    if settings.storage_mode == "efs":
        layer.file_system = SharedFileSystem(
            f"{name}-efs",
            storage=settings.storage,
            cluster=cluster.cluster,
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            driver_version=pinned_addons["aws-efs-csi-driver"],
            after=layer.ready,
            opts=on_aws,
        )
    layer.artifacts = ArtifactStore(f"{name}-artifacts", settings=settings.artifacts, opts=on_aws)
    if settings.training.build:
        layer.training_image = BuiltImage(
            f"{name}-training-image",
            context=images.TRAINING,
            repository_name=f"{name}/training",
            opts=on_aws,
        ).ref
    if settings.serving.build_inference_image:
        layer.inference_image = BuiltImage(
            f"{name}-inference-image",
            context=images.INFERENCE,
            repository_name=f"{name}/inference",
            opts=on_aws,
        ).ref
    ClusterAutoscaler(
        f"{name}-autoscaler",
        cluster=cluster.cluster,
        cluster_name=name,
        region=aws_settings.region,
        kubernetes_minor=minor,
        kubernetes=cluster.provider,
        depends_on=layer.ready,
        opts=on_aws,
    )
    return layer

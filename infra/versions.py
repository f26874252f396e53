"""The one table of pinned versions, each with the source it was checked against.

Charts, images, manifests and add-ons that later components install add their pins here, so an
upgrade is a reviewed change to this file and nowhere else.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class KubernetesRelease:
    """One Kubernetes minor version and how long the platform may run it."""

    minor: str
    # Amazon EKS end of standard support (EKS user guide, "kubernetes-versions" page).
    # None: not offered by EKS, so only allowed for existing clusters.
    eks_standard_support_ends: dt.date | None
    eks_extended_support_ends: dt.date | None


# Every minor here has a strict OpenAPI schema in kubernetes-validate 1.37.0, which the tests use to
# validate the rendered manifests.  Dates: EKS release calendar, checked 2026-11-28.
KUBERNETES_RELEASES: tuple[KubernetesRelease, ...] = (
    KubernetesRelease("1.30", None, None),
    KubernetesRelease("1.31", None, None),
    KubernetesRelease("1.32", dt.date(2026, 3, 23), dt.date(2027, 3, 23)),
    KubernetesRelease("1.33", dt.date(2026, 7, 29), dt.date(2027, 7, 29)),
    KubernetesRelease("1.34", dt.date(2026, 12, 2), dt.date(2027, 12, 2)),
    KubernetesRelease("1.35", dt.date(2027, 3, 27), dt.date(2028, 3, 27)),
)

# New EKS clusters default to the newest minor in EKS standard support.
DEFAULT_KUBERNETES_VERSION = "1.35"


def eks_versions() -> list[str]:
    """Minor versions we build EKS clusters on: those EKS offers and we have add-on pins for."""
    return [
        r.minor
        for r in KUBERNETES_RELEASES
        if r.eks_extended_support_ends is not None and r.minor in EKS_ADDON_VERSIONS
    ]


def existing_cluster_versions() -> list[str]:
    """Minor versions an existing cluster may run."""
    return [r.minor for r in KUBERNETES_RELEASES]


def pod_security_version(kubernetes_minor: str) -> str:
    """The Pod Security Standards version to pin on namespaces: the cluster's own minor.

    Pinning (rather than `latest`) keeps a control-plane upgrade from tightening the policy under
    running workloads; the pin moves when the stack's Kubernetes version moves.
    """
    return f"v{kubernetes_minor}"


@dataclass(frozen=True)
class EksAddonVersions:
    vpc_cni: str
    coredns: str
    kube_proxy: str
    pod_identity_agent: str
    efs_csi_driver: str
    ebs_csi_driver: str = "v1.66.0-eksbuild.1"
    metrics_server: str = "v0.8.1-eksbuild.10"


# EKS managed add-ons per Kubernetes minor.  coredns and kube-proxy: the EKS user guide's
# "latest version for each Kubernetes version" tables (managing-coredns, managing-kube-proxy).
# vpc-cni and eks-pod-identity-agent have no such table: the versions are those
# `aws eks describe-addon-versions` resolved for 1.31-1.36 clusters in 2026-09 (one CNI build
# serves every minor).  aws-efs-csi-driver: v3.4.2-eksbuild.1, which describe-addon-versions
# resolved for 1.34 and 1.35 clusters in 2026-09 (driver 3.x; one build serves every minor).
# aws-ebs-csi-driver: v1.66.0-eksbuild.1, the default AWS marked in 2026-09 (one build serves
# every supported minor), for Prometheus's and Alertmanager's block volumes.
# metrics-server (a community add-on: EKS user guide, "Community add-ons", add-on name
# `metrics-server`, namespace kube-system, no IAM): v0.8.1-eksbuild.10, metrics-server 0.8.1, the
# appVersion of kubernetes-sigs/metrics-server chart 3.13.1.  No AWS table lists its builds per
# minor; what was seen is describe-addon-versions output others recorded in 2026-06: .10 resolved
# for a 1.33 cluster and named the default for 1.35, and one earlier build (.5) listed for every
# minor from 1.31 to 1.35.  That it is offered for 1.34 is inferred from that, not seen.
# A stack may override any of them under `ml-platform:aws.addons`.
# The drivers behind the two CSI pins exist upstream: aws-ebs-csi-driver 1.66
# (kubernetes-sigs/aws-ebs-csi-driver#3013, "Release1.66", merged 2026-09-09) and
# aws-efs-csi-driver 3.4.2 (kubernetes-sigs/aws-efs-csi-driver#1944, post-release of v3.4.2,
# 2026-08-19).  Whether EKS offers exactly `-eksbuild.1` of each for a given minor only
# `aws eks describe-addon-versions --addon-name <name> --kubernetes-version <minor>` can tell;
# run it before the first `pulumi up` of a new minor (a version EKS does not offer fails
# CreateAddon, after the preview passed).
EKS_ADDON_VERSIONS: dict[str, EksAddonVersions] = {
    "1.33": EksAddonVersions(
        "v1.22.4-eksbuild.3",
        "v1.12.4-eksbuild.18",
        "v1.33.10-eksbuild.13",
        "v1.3.10-eksbuild.3",
        "v3.4.2-eksbuild.1",
    ),
    "1.34": EksAddonVersions(
        "v1.22.4-eksbuild.3",
        "v1.13.2-eksbuild.11",
        "v1.34.6-eksbuild.13",
        "v1.3.10-eksbuild.3",
        "v3.4.2-eksbuild.1",
    ),
    "1.35": EksAddonVersions(
        "v1.22.4-eksbuild.3",
        "v1.14.3-eksbuild.3",
        "v1.35.3-eksbuild.13",
        "v1.3.10-eksbuild.3",
        "v3.4.2-eksbuild.1",
    ),
}


@dataclass(frozen=True)
class HelmChart:
    chart: str
    version: str
    repository: str


# kubernetes/autoscaler chart 9.59.0 (appVersion 1.35.0).  The image follows the cluster's minor
# (the autoscaler supports only its own minor); tags from the cluster-autoscaler-1.3x.y releases
# of 2026-07-23.
CLUSTER_AUTOSCALER_CHART = HelmChart(
    "cluster-autoscaler", "9.59.0", "https://kubernetes.github.io/autoscaler"
)
CLUSTER_AUTOSCALER_IMAGE = "registry.k8s.io/autoscaling/cluster-autoscaler"
CLUSTER_AUTOSCALER_TAGS: dict[str, str] = {"1.33": "v1.33.6", "1.34": "v1.34.5", "1.35": "v1.35.2"}

# metrics-server for existing clusters without one (EKS gets the add-on above): chart 3.13.1
# (appVersion 0.8.1; tag metrics-server-helm-chart-3.13.1 of kubernetes-sigs/metrics-server,
# 2026-06-11), the newest chart release.  Server v0.9.0 is tagged (2026-07-13) but no chart
# packages it yet.  tests/upstream/metrics-server-chart.yaml holds what the program relies on.
METRICS_SERVER_CHART = HelmChart(
    "metrics-server", "3.13.1", "https://kubernetes-sigs.github.io/metrics-server/"
)

# AWS Load Balancer Controller chart 3.5.0 (appVersion v3.5.0; since 3.0.0 the chart version
# follows the controller's): aws/eks-charts#1354, merged 2026-08-03, and the v3.5 installation
# guide.  Its IAM policy (infra/load_balancer_controller.py) is that release's; check both again
# when this changes.
AWS_LOAD_BALANCER_CONTROLLER_CHART = HelmChart(
    "aws-load-balancer-controller", "3.5.0", "https://aws.github.io/eks-charts"
)


# NVIDIA GPU Operator: device plugin, GPU feature discovery, MIG manager, DCGM exporter, and (for
# clusters without them) the driver and container toolkit.  v26.7.1 (chart on helm.ngc.nvidia.com,
# released 2026-10); 26.7.x is NVIDIA's supported line, 26.3.x deprecated (NVIDIA's "Platform
# Support" page).  The newest copy of NVIDIA/gpu-operator readable offline ends at tag v26.7.0
# (2026-08-21), so v26.7.1's templates have not been read here; that it exists rests on others'
# pins of the NGC chart archive v26.7.1 (October 2026) and Chainguard's gpu-operator-26.7 package
# 26.7.1-r1 (advisory CGA-5g3h-74j2-5cwr, 2026-10-09).  Values were checked against v26.7.0.
GPU_OPERATOR_CHART = HelmChart("gpu-operator", "v26.7.1", "https://helm.ngc.nvidia.com/nvidia")
# The NVIDIA device plugin that release deploys: not pinned here but implied by the chart
# (NVIDIA/gpu-operator@v26.7.0:deployments/gpu-operator/values.yaml, devicePlugin.version; the
# v26.7.1 tag is not readable offline, see above).  The resource names and counts GPU pools
# advertise (infra/gpu_sharing.py) follow this release's source: check them when it changes.
GPU_OPERATOR_DEVICE_PLUGIN_VERSION = "v0.20.0"
# The NVIDIA container toolkit that release installs where it installs one (toolkit.version,
# NVIDIA/gpu-operator@v26.7.0:deployments/gpu-operator/values.yaml L229-233); the training
# image's NVIDIA_DRIVER_CAPABILITIES follows its source
# (tests/upstream/nvidia-container-toolkit-image.yaml).
GPU_OPERATOR_CONTAINER_TOOLKIT_VERSION = "v1.20.0"

# The second scheduler must match the control plane's minor version (version-skew policy).
# Newest patch releases seen: kubernetes.io/releases (1.35.9 of 2026-09-15, 1.34.9) and 1.33.13.
KUBE_SCHEDULER_IMAGE = "registry.k8s.io/kube-scheduler"
KUBE_SCHEDULER_TAGS: dict[str, str] = {"1.33": "v1.33.13", "1.34": "v1.34.9", "1.35": "v1.35.9"}

# TensorFlow's CPU image (ships Python and NumPy) for small platform jobs such as dataset
# staging.  2.20 is the minor the training code and TF Serving are pinned to together.
TENSORFLOW_IMAGE = "tensorflow/tensorflow:2.20.0"


@dataclass(frozen=True)
class KustomizeSource:
    """A remote kustomization: `<repository>//<path>?ref=<ref>`, the form kustomize clones."""

    repository: str
    path: str
    ref: str

    @property
    def url(self) -> str:
        return f"{self.repository}//{self.path}?ref={self.ref}"


# Training Operator v1 (TFJob, PyTorchJob): the last line with a TensorFlow-aware operator; Trainer
# v2 has no TensorFlow runtime.  v1.9.4 (2026-08-18) is the newest v1.9 tag of kubeflow/trainer,
# formerly kubeflow/training-operator; its standalone overlay installs into `kubeflow`.
TRAINING_OPERATOR = KustomizeSource(
    "https://github.com/kubeflow/trainer", "manifests/overlays/standalone", "v1.9.4"
)
# Notebook controller of Kubeflow 1.10; the standalone overlay runs without Istio
# (USE_ISTIO=false) in `notebook-controller-system`.
NOTEBOOK_CONTROLLER = KustomizeSource(
    "https://github.com/kubeflow/kubeflow",
    "components/notebook-controller/config/overlays/standalone",
    "v1.10.0",
)
# Notebook images of kubeflow/notebooks v1.11.0 (where the images moved after Kubeflow 1.10; its
# spawner_ui_config.yaml lists these two), with TensorFlow 2.21.0: a SavedModel loads in the same
# or a later TensorFlow minor only (tensorflow/docs site/en/guide/versions.md), so the notebooks'
# TensorFlow must not be older than the training's 2.20.  Kubeflow 1.10's images carry 2.17.1.
# The CUDA image needs a driver for CUDA >= 12.5, as TF Serving's -gpu image does.
NOTEBOOK_IMAGES_REF = "v1.11.0"
NOTEBOOK_IMAGE_CPU = (
    f"ghcr.io/kubeflow/kubeflow/notebook-servers/jupyter-tensorflow-full:{NOTEBOOK_IMAGES_REF}"
)
NOTEBOOK_IMAGE_GPU = (
    f"ghcr.io/kubeflow/kubeflow/notebook-servers/jupyter-tensorflow-cuda-full:{NOTEBOOK_IMAGES_REF}"
)
# Kubeflow Pipelines standalone (kubeflow/website's latest-version: 2.17.0), cluster-scoped
# resources first, then the platform-agnostic environment (SeaweedFS object store) in `kubeflow`.
# AWS stacks point it at S3 (infra/pipeline_store.py); those settings follow this release's
# object-store code, so check them again when this changes.
KFP_REF = "2.17.0"
KFP_CLUSTER_RESOURCES = KustomizeSource(
    "https://github.com/kubeflow/pipelines", "manifests/kustomize/cluster-scoped-resources", KFP_REF
)
KFP_PLATFORM_AGNOSTIC = KustomizeSource(
    "https://github.com/kubeflow/pipelines", "manifests/kustomize/env/platform-agnostic", KFP_REF
)
# Katib v0.19.0 (2025-10, the newest v0.19 tag of kubeflow/katib), its standalone install: the
# controller (with its admission webhooks and their self-generated certificate), the UI, the DB
# manager and its MySQL database, and the experiments/trials/suggestions CRDs, all in `kubeflow`.
# Its katib-config names the suggestion and metrics-collector images by the same tag.  What the
# program relies on from it is in tests/upstream/kubeflow-katib-*.yaml: check those when this moves.
KATIB = KustomizeSource(
    "https://github.com/kubeflow/katib", "manifests/v1beta1/installs/katib-standalone", "v0.19.0"
)
# The Argo Workflows release that install runs pipelines with: not pinned here but implied by
# KFP_REF, whose manifests/kustomize/third-party/argo kustomizations pull
# argoproj/argo-workflows manifests at this ref.  Recorded so facts read from it are re-read when
# KFP_REF moves (tests/upstream/kubeflow-pipelines-runs.yaml records the ref KFP_REF uses).
KFP_ARGO_WORKFLOWS_REF = "v4.0.5"

# TF Serving, the same minor as the TensorFlow that trains and exports the models (the 2.20.0
# tag of tensorflow/serving; the -gpu image is built on CUDA 12.5 and cuDNN 9).  The server's
# flags and probes (workloads/serving.py) follow this tag's source: check them when it changes.
TF_SERVING_VERSION = "2.20.0"
TF_SERVING_IMAGE = f"tensorflow/serving:{TF_SERVING_VERSION}"
TF_SERVING_GPU_IMAGE = f"tensorflow/serving:{TF_SERVING_VERSION}-gpu"

# kube-prometheus-stack 88.5.3 (Prometheus Operator v0.93.1): Prometheus, Alertmanager, Grafana,
# node-exporter, kube-state-metrics and the monitoring.coreos.com CRDs.
KUBE_PROMETHEUS_STACK_CHART = HelmChart(
    "kube-prometheus-stack", "88.5.3", "https://prometheus-community.github.io/helm-charts"
)
# What that release brings, not pinned separately but read from it: its kube-state-metrics
# subchart (prometheus-community/helm-charts@kube-prometheus-stack-88.5.3:
# charts/kube-prometheus-stack/Chart.yaml, dependency 8.4.0) and that chart's appVersion
# (@kube-state-metrics-8.4.0:charts/kube-state-metrics/Chart.yaml, 2.20.0; tag v2.20.0 of
# kubernetes/kube-state-metrics).  The custom-resource metrics (infra/training_job_metrics.py)
# follow both: check them when the stack's chart changes.
KUBE_STATE_METRICS_CHART_VERSION = "8.4.0"
KUBE_STATE_METRICS_VERSION = "v2.20.0"

# What that chart ships, from its Chart.yaml (appVersion, and the grafana dependency whose
# defaults apply to every Grafana value we leave unset).
PROMETHEUS_OPERATOR_VERSION = "v0.93.1"
KUBE_PROMETHEUS_STACK_GRAFANA_CHART = "12.11.1"
# The Alertmanager image it runs (@kube-prometheus-stack-88.5.3:charts/kube-prometheus-stack/
# values.yaml L1018-1021, alertmanager.alertmanagerSpec.image.tag): the receivers' fields
# (infra/alert_routing.py) must exist in it.
ALERTMANAGER_VERSION = "v0.34.0"

# Fluent Bit chart 0.54.1 (Fluent Bit 4.1.1; fluent/helm-charts CHANGELOG, 2026-01-06).  The
# cloudwatch_logs output reads EKS Pod Identity credentials since Fluent Bit 4.0
# (fluent/fluent-bit#10114).
FLUENT_BIT_CHART = HelmChart("fluent-bit", "0.54.1", "https://fluent.github.io/helm-charts")
# The Fluent Bit that chart runs (its appVersion; tag v4.1.1 of fluent/fluent-bit).  The buffer
# limits in infra/log_shipping.py are sized from this release's source: check them when it changes.
FLUENT_BIT_VERSION = "v4.1.1"

"""The NVIDIA GPU Operator on the GPU nodes.

Why the operator rather than the bare device-plugin chart: besides the device plugin and GPU
feature discovery it runs the MIG manager, which partitions GPUs as each pool's
`nvidia.com/mig.config` label asks, and the DCGM exporter.  On the EKS NVIDIA AMIs the driver and
container toolkit are already on the node, so the operator leaves them alone there.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra import gpu_sharing, versions
from infra.helm import pinned_release
from infra.scheduling import GPU_TAINT
from infra.settings import GpuPoolSettings, Settings

RELEASE = "gpu-operator"
DEVICE_PLUGIN_CONFIGMAP = "device-plugin-config"


def operator_values(settings: Settings) -> dict[str, Any]:
    pools: list[GpuPoolSettings] = list(settings.node_pools.gpu)
    install_driver = settings.gpu.driver == "operator"
    uses_mig = any(p.sharing.mode == "mig" for p in pools)
    return {
        "driver": {"enabled": install_driver},
        "toolkit": {"enabled": install_driver},
        "nfd": {"enabled": True},
        "gfd": {"enabled": True},
        "devicePlugin": {
            "enabled": True,
            "config": {
                "create": True,
                "name": DEVICE_PLUGIN_CONFIGMAP,
                "default": gpu_sharing.DEFAULT_CONFIG,
                "data": gpu_sharing.device_plugin_configs(pools),
            },
        },
        "mig": {"strategy": gpu_sharing.mig_strategy(pools)},
        "migManager": {"enabled": uses_mig, "config": {"default": "all-disabled"}},
        # Per-GPU metrics (utilisation, memory, temperature, XID errors), attributed to the pods
        # using each GPU, scraped through the exporter's ServiceMonitor.
        #
        # No NVIDIA_RESOURCE_NAMES: the exporter then links only nvidia.com/gpu and MIG devices
        # to pods (NVIDIA/dcgm-exporter@d5e5f51:internal/pkg/transformation/kubernetes.go
        # L74-76), so a time-sliced GPU (nvidia.com/gpu.shared) carries no pod.  Deliberately:
        # listed there, a shared GPU's series would name whichever of its pods the kubelet lists
        # last (the "<uuid>::<n>" branch of toDeviceToPod), a holder that is not the truth.
        "dcgmExporter": {
            "enabled": settings.monitoring.enabled,
            "serviceMonitor": {
                "enabled": settings.monitoring.enabled,
                "interval": "15s",
                # The exporter labels each GPU's series with the pod holding it (namespace, pod,
                # container), and only when a pod holds it (kubernetes.go L424-429).
                # honorLabels keeps those labels (without it they become exported_*), and
                # Prometheus fills in every target label a series lacks; so the target's own
                # namespace/pod/container (the exporter's pod in gpu-system) are dropped, or
                # every GPU nobody holds would look held by the exporter
                # (prometheus-operator/prometheus-operator@v0.93.0:pkg/prometheus/promcfg.go
                # L2118-2212: these relabelings run after the target labels are set; the GPU
                # Operator copies them onto the ServiceMonitor,
                # NVIDIA/gpu-operator@v26.7.0:controllers/object_controls.go L5002-5014).
                "honorLabels": True,
                "relabelings": [{"action": "labeldrop", "regex": "namespace|pod|container"}],
            },
        },
        # Operands run only where NFD finds an NVIDIA PCI device; they must tolerate the taint
        # every GPU pool carries.
        "daemonsets": {
            "tolerations": [
                {"key": GPU_TAINT.key, "operator": "Exists", "effect": GPU_TAINT.effect}
            ],
            "priorityClassName": "system-node-critical",
        },
        "node-feature-discovery": {
            "worker": {
                "tolerations": [
                    {"key": GPU_TAINT.key, "operator": "Exists", "effect": GPU_TAINT.effect}
                ]
            }
        },
    }


class GpuOperator(pulumi.ComponentResource):
    release: k8s.helm.v3.Release

    def __init__(
        self,
        name: str,
        settings: Settings,
        namespace: k8s.core.v1.Namespace,
        after: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`after`: what the release waits for (the system nodes, the monitoring CRDs).

        A component's own `depends_on` does not hold back its children, so it is passed on here:
        the release is atomic with a timeout and must not race the nodes it runs on.
        """
        super().__init__("ml-platform:gpu:GpuOperator", name, None, opts)
        self.release = pinned_release(
            name,
            versions.GPU_OPERATOR_CHART,
            release_name=RELEASE,
            namespace=namespace.metadata.name,
            values=operator_values(settings),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace, *after]),
        )
        self.register_outputs({"release": self.release.name})

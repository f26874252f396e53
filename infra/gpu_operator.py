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
        "dcgmExporter": {
            "enabled": settings.monitoring.enabled,
            "serviceMonitor": {
                "enabled": settings.monitoring.enabled,
                "interval": "15s",
                # The exporter labels each GPU's series with the pod holding it (namespace, pod,
                # container); without honorLabels the exporter's own pod would overwrite them and
                # GpuIdleWhileAllocated and the per-pod panels would see only the exporter.
                "honorLabels": True,
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

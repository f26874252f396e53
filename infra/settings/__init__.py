"""The stack's configuration, parsed once into typed, validated settings (see root.py)."""

from infra.settings.base import (
    PROJECT,
    ConfigProblem,
    SettingsError,
    SettingsModel,
    quantity_value,
)
from infra.settings.cluster import (
    AccessSettings,
    AddonVersions,
    AwsSettings,
    ClusterSettings,
    EndpointSettings,
    ExistingVpcSettings,
)
from infra.settings.components import (
    GpuSettings,
    KubeflowSettings,
    NfsSettings,
    NotebookSettings,
    StorageSettings,
    Switch,
    TeamQuota,
    TeamSettings,
    VolumeSizes,
)
from infra.settings.pools import (
    CPU_AMI_TYPES,
    GPU_AMI_TYPES,
    MAX_POOL_NAME,
    GpuPoolSettings,
    GpuSharingSettings,
    NodePoolsSettings,
    SystemPoolSettings,
)
from infra.settings.root import (
    Settings,
    load_settings,
    parse_settings,
    raw_project_config,
    unwrap_annotation,
)

__all__ = [
    "CPU_AMI_TYPES",
    "GPU_AMI_TYPES",
    "MAX_POOL_NAME",
    "PROJECT",
    "AccessSettings",
    "AddonVersions",
    "AwsSettings",
    "ClusterSettings",
    "ConfigProblem",
    "EndpointSettings",
    "ExistingVpcSettings",
    "GpuPoolSettings",
    "GpuSettings",
    "GpuSharingSettings",
    "KubeflowSettings",
    "NfsSettings",
    "NodePoolsSettings",
    "NotebookSettings",
    "Settings",
    "SettingsError",
    "SettingsModel",
    "StorageSettings",
    "Switch",
    "SystemPoolSettings",
    "TeamQuota",
    "TeamSettings",
    "VolumeSizes",
    "load_settings",
    "parse_settings",
    "quantity_value",
    "raw_project_config",
    "unwrap_annotation",
]

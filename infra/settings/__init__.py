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
    StagingSettings,
    StorageSettings,
    Switch,
    TeamQuota,
    TeamSettings,
    VolumeSettings,
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
from infra.settings.workloads import (
    NotebookServerSettings,
    TrainingJobSettings,
    TrainingSettings,
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
    "NotebookServerSettings",
    "NotebookSettings",
    "Settings",
    "SettingsError",
    "SettingsModel",
    "StagingSettings",
    "StorageSettings",
    "Switch",
    "SystemPoolSettings",
    "TeamQuota",
    "TeamSettings",
    "TrainingJobSettings",
    "TrainingSettings",
    "VolumeSettings",
    "load_settings",
    "parse_settings",
    "quantity_value",
    "raw_project_config",
    "unwrap_annotation",
]

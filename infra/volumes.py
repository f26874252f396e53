"""The shared volumes as Kubernetes claims, in every namespace that mounts them.

A PersistentVolumeClaim belongs to one namespace, and a dynamically provisioned volume gets a
directory of its own, so the datasets and models that training, staging and serving must all see
are static PersistentVolumes, one per consuming namespace, all pointing at the same files (an EFS
access point, or one NFS export path), each pre-bound to its claim.  Workspaces are per team and
provisioned dynamically on EFS.  Other components ask this one for claim names; nobody repeats
them.
"""

from __future__ import annotations

from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from infra import labels
from infra.efs import SharedFileSystem
from infra.efs_paths import WORKSPACE_BASE
from infra.namespaces import PlatformNamespaces
from infra.settings import StorageSettings, VolumeSettings

VolumeKey = Literal["datasets", "models", "workspace"]
EFS_DRIVER = "efs.csi.aws.com"
WORKSPACE_CLASS = "efs-workspace"


class SharedVolumes(pulumi.ComponentResource):
    claims: dict[tuple[VolumeKey, str], k8s.core.v1.PersistentVolumeClaim]

    def __init__(
        self,
        name: str,
        *,
        storage: StorageSettings,
        mode: str,
        consumers: dict[VolumeKey, list[str]],
        namespaces: PlatformNamespaces,
        efs: SharedFileSystem | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:storage:SharedVolumes", name, None, opts)
        self._storage = storage
        self._mode = mode
        self._efs = efs
        self._name = name
        self.claims = {}
        workspace_class: k8s.storage.v1.StorageClass | None = None
        if mode == "efs" and consumers.get("workspace"):
            workspace_class = self._workspace_class()
        for volume, users in consumers.items():
            for namespace in users:
                claim = self._claim(
                    volume, namespace, namespaces.namespaces[namespace], workspace_class
                )
                self.claims[(volume, namespace)] = claim
        self.register_outputs({"claims": sorted(f"{ns}/{v}" for v, ns in self.claims)})

    def settings_of(self, volume: VolumeKey) -> VolumeSettings:
        setting: VolumeSettings = getattr(self._storage, volume)
        return setting

    def claim_name(self, volume: VolumeKey) -> str:
        """The claim name workloads mount the volume by, in any namespace."""
        return self.settings_of(volume).name

    def _workspace_class(self) -> k8s.storage.v1.StorageClass:
        assert self._efs is not None
        owner = str(self._storage.file_owner)
        return k8s.storage.v1.StorageClass(
            f"{self._name}-{WORKSPACE_CLASS}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=WORKSPACE_CLASS, labels=labels.common("storage")
            ),
            provisioner=EFS_DRIVER,
            parameters={
                "provisioningMode": "efs-ap",
                "fileSystemId": self._efs.file_system_id,
                "directoryPerms": "700",
                "uid": owner,
                "gid": owner,
                "basePath": WORKSPACE_BASE,
                "subPathPattern": "${.PVC.namespace}/${.PVC.name}",
                "ensureUniqueDirectory": "true",
            },
            # A deleted claim must not take a team's notebooks with it.
            reclaim_policy="Retain",
            volume_binding_mode="Immediate",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self._efs.csi_driver]),
        )

    def _static_spec(
        self, volume: VolumeKey, namespace: str
    ) -> tuple[k8s.core.v1.PersistentVolumeSpecArgs, list[pulumi.Resource]]:
        """A PV spec pointing at the volume's shared files, pre-bound to the namespace's claim."""
        setting = self.settings_of(volume)
        csi: k8s.core.v1.CSIPersistentVolumeSourceArgs | None = None
        nfs_source: k8s.core.v1.NFSVolumeSourceArgs | None = None
        mount_options: list[str] | None = None
        needs: list[pulumi.Resource] = []
        if self._mode == "efs":
            assert self._efs is not None
            handle = pulumi.Output.concat(
                self._efs.file_system_id, "::", self._efs.access_point_ids[volume]
            )
            csi = k8s.core.v1.CSIPersistentVolumeSourceArgs(driver=EFS_DRIVER, volume_handle=handle)
            needs = [self._efs.csi_driver]
        else:
            nfs = self._storage.nfs
            assert nfs is not None
            base = nfs.path.rstrip("/")
            path = f"{base}/workspaces/{namespace}" if volume == "workspace" else f"{base}/{volume}"
            nfs_source = k8s.core.v1.NFSVolumeSourceArgs(server=nfs.server, path=path)
            mount_options = ["nfsvers=4.1", "hard"]
        spec = k8s.core.v1.PersistentVolumeSpecArgs(
            capacity={"storage": setting.size},
            access_modes=["ReadWriteMany"],
            persistent_volume_reclaim_policy="Retain",
            storage_class_name="",
            claim_ref=k8s.core.v1.ObjectReferenceArgs(namespace=namespace, name=setting.name),
            csi=csi,
            nfs=nfs_source,
            mount_options=mount_options,
        )
        return spec, needs

    def _claim(
        self,
        volume: VolumeKey,
        namespace: str,
        namespace_resource: k8s.core.v1.Namespace,
        workspace_class: k8s.storage.v1.StorageClass | None,
    ) -> k8s.core.v1.PersistentVolumeClaim:
        setting = self.settings_of(volume)
        meta_labels = {**labels.common("storage"), f"{labels.PREFIX}/volume": volume}
        static = self._mode == "nfs" or (self._mode == "efs" and volume != "workspace")
        depends: list[pulumi.Resource] = [namespace_resource]
        volume_name: str | None = None
        if static:
            spec, needs = self._static_spec(volume, namespace)
            volume_name = f"{namespace}-{setting.name}"
            depends.append(
                k8s.core.v1.PersistentVolume(
                    f"{self._name}-{namespace}-{volume}-pv",
                    metadata=k8s.meta.v1.ObjectMetaArgs(name=volume_name, labels=meta_labels),
                    spec=spec,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=needs),
                )
            )
            class_name = ""
        elif self._mode == "efs":
            assert workspace_class is not None
            class_name = WORKSPACE_CLASS
            depends.append(workspace_class)
        else:
            class_name = self._storage.storage_class_name or ""
        return k8s.core.v1.PersistentVolumeClaim(
            f"{self._name}-{namespace}-{volume}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=setting.name, namespace=namespace, labels=meta_labels
            ),
            spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                access_modes=["ReadWriteMany"],
                storage_class_name=class_name,
                volume_name=volume_name,
                resources=k8s.core.v1.VolumeResourceRequirementsArgs(
                    requests={"storage": setting.size}
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends),
        )

"""Amazon EFS for the shared volumes, and the EFS CSI driver that mounts it.

One encrypted file system with elastic throughput (bursting runs out of credits under training
reads), a mount target in every private subnet reachable only from the cluster's nodes, automatic
backups, and infrequent-access tiering.  The datasets and models volumes are EFS access points,
so every namespace that mounts them sees the same files as the same POSIX owner.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.iam import POD_IDENTITY_PRINCIPAL, ServiceRole, managed_policy
from infra.settings import StorageSettings

NFS_PORT = 2049
CONTROLLER_SERVICE_ACCOUNT = "efs-csi-controller-sa"
SHARED_VOLUMES = ("datasets", "models")


class SharedFileSystem(pulumi.ComponentResource):
    file_system_id: pulumi.Output[str]
    access_point_ids: dict[str, pulumi.Output[str]]  # "datasets"/"models" -> fsap-...
    csi_driver: aws.eks.Addon

    def __init__(
        self,
        name: str,
        *,
        storage: StorageSettings,
        cluster: aws.eks.Cluster,
        vpc_id: pulumi.Input[str],
        private_subnet_ids: list[pulumi.Output[str]],
        driver_version: str,
        after: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:storage:SharedFileSystem", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Managed node groups without their own security groups use the cluster security group,
        # so NFS is opened to exactly the cluster's nodes (and control plane).
        node_security_group = cluster.vpc_config.cluster_security_group_id
        mount_security_group = aws.ec2.SecurityGroup(
            f"{name}-mount",
            vpc_id=vpc_id,
            # EC2 allows only a-zA-Z0-9, spaces and ._-:/()#,@[]+=&;{}!$* here (no apostrophe):
            # infra/aws_names.py SECURITY_GROUP_DESCRIPTION.
            description="NFS to the shared file system from the cluster nodes only",
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    description="NFS from cluster nodes",
                    protocol="tcp",
                    from_port=NFS_PORT,
                    to_port=NFS_PORT,
                    security_groups=[node_security_group],
                )
            ],
            opts=child,
        )
        file_system = aws.efs.FileSystem(
            f"{name}-fs",
            encrypted=True,
            performance_mode="generalPurpose",
            throughput_mode="elastic",
            lifecycle_policies=[
                aws.efs.FileSystemLifecyclePolicyArgs(transition_to_ia="AFTER_30_DAYS"),
                aws.efs.FileSystemLifecyclePolicyArgs(
                    transition_to_primary_storage_class="AFTER_1_ACCESS"
                ),
            ],
            tags={"Name": f"{name}-shared"},
            opts=child,
        )
        aws.efs.BackupPolicy(
            f"{name}-backup",
            file_system_id=file_system.id,
            backup_policy=aws.efs.BackupPolicyBackupPolicyArgs(status="ENABLED"),
            opts=child,
        )
        mount_targets = [
            aws.efs.MountTarget(
                f"{name}-mount-{index}",
                file_system_id=file_system.id,
                subnet_id=subnet_id,
                security_groups=[mount_security_group.id],
                opts=child,
            )
            for index, subnet_id in enumerate(private_subnet_ids)
        ]
        owner = storage.file_owner
        self.access_point_ids = {}
        for volume in SHARED_VOLUMES:
            access_point = aws.efs.AccessPoint(
                f"{name}-{volume}",
                file_system_id=file_system.id,
                # Every client acts as the files' owner, whatever uid its container runs as.
                posix_user=aws.efs.AccessPointPosixUserArgs(uid=owner, gid=owner),
                root_directory=aws.efs.AccessPointRootDirectoryArgs(
                    path=f"/{volume}",
                    creation_info=aws.efs.AccessPointRootDirectoryCreationInfoArgs(
                        owner_uid=owner, owner_gid=owner, permissions="0775"
                    ),
                ),
                tags={"Name": f"{name}-{volume}"},
                opts=child,
            )
            self.access_point_ids[volume] = access_point.id

        role = ServiceRole(
            f"{name}-csi",
            service=POD_IDENTITY_PRINCIPAL,
            managed_policies=[managed_policy("AmazonEFSCSIDriverPolicy", service_role=True)],
            description="EFS CSI driver controller through EKS Pod Identity",
            opts=child,
        )
        self.csi_driver = aws.eks.Addon(
            f"{name}-csi",
            cluster_name=cluster.name,
            addon_name="aws-efs-csi-driver",
            addon_version=driver_version,
            pod_identity_associations=[
                aws.eks.AddonPodIdentityAssociationArgs(
                    role_arn=role.role.arn, service_account=CONTROLLER_SERVICE_ACCOUNT
                )
            ],
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            # The driver's controller is a Deployment: it needs nodes; volumes need mount targets.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*after, *mount_targets]),
        )
        self.file_system_id = file_system.id
        self.register_outputs(
            {"file_system_id": self.file_system_id, "access_points": self.access_point_ids}
        )

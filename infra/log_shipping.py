"""Fluent Bit on every node: container and kubelet logs, with Kubernetes metadata, to one sink.

On AWS the sink is a CloudWatch Logs group this program creates (so it has a retention period,
and is encrypted with a KMS key of its own), one stream per container, written with an EKS Pod
Identity role that may only append to that group.  Fluent Bit keeps its read positions and
unsent chunks on the node, so a restart neither loses nor repeats lines, and a CloudWatch outage
buffers to disk instead of memory.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import labels, names, versions
from infra.helm import pinned_release
from infra.iam import POD_IDENTITY_PRINCIPAL, ServiceRole, log_group_statement, policy_document
from infra.log_encryption import encrypted_log_group
from infra.settings import LoggingSettings

SERVICE_ACCOUNT = "fluent-bit"
# On the node: tail positions and the filesystem buffer.
STATE_DIR = "/var/fluent-bit/state"
# Container log files are named <pod>_<namespace>_<container>-<id>.log; Fluent Bit skips its own,
# which would otherwise feed back into itself.
OWN_LOGS = f"/var/log/containers/*_{names.LOGGING}_*.log"

# Fluent Bit's memory.  Inputs buffer to the node's disk (storage.type filesystem), where
# Mem_Buf_Limit never pauses them (fluent/fluent-bit@v4.1.1:src/flb_input_chunk.c L1368-1385), so
# it is not set.  What holds log data in memory is the chunks that are "up" (memory-mapped), and
# those are bounded by storage.max_chunks_up, default 128 (@v4.1.1:include/fluent-bit/
# flb_storage.h L34): at ~2 MB a chunk (flb_input_chunk.h L40), more than the pod may use.
#   chunks up      MAX_CHUNKS_UP, plus 1 forced up for the write in progress
#                  (@v4.1.1:src/flb_input_chunk.c L904-968, L1632-1641, L1781)
#   each           2,048,000 B, and a chunk stops taking writes only once past that
#                  (flb_input_chunk.c L1753): counted twice, 4,096,000 B
#   backlog        storage.backlog.mem_limit 16M = 16,000,000 B, decimal units
#                  (@v4.1.1:plugins/in_storage_backlog/sb.c L530-536, src/flb_utils.c L535-537)
#   (32 + 1) x 4,096,000 + 16,000,000 = 151,168,000 B (144.2 MiB) of the 256 MiB limit,
#   which leaves 111.8 MiB for Fluent Bit itself (tail buffers, metadata cache, outputs).
# Each input also pauses while the chunks are at the limit (storage.pause_on_chunks_overlimit,
# @v4.1.1:src/flb_input_chunk.c L1284-1296): unread lines wait in their files meanwhile.
MEMORY_LIMIT = "256Mi"
MAX_CHUNKS_UP = 32
BACKLOG_MEM_LIMIT = "16M"


# What the cloudwatch_logs output calls with `auto_create_group false`: CreateLogStream for each
# new stream and PutLogEvents (fluent/fluent-bit@v4.1.1:plugins/out_cloudwatch_logs/
# cloudwatch_api.c, the only X-Amz-Target headers it sends, :66-92; CreateLogGroup and
# PutRetentionPolicy only when auto_create_group is on, :1965-1968).  No Describe* call.
CLOUDWATCH_OUTPUT_ACTIONS = ["logs:CreateLogStream", "logs:PutLogEvents"]


def log_group_name(cluster_name: str) -> str:
    return f"/aws/eks/{cluster_name}/containers"


def writer_policy(log_group_arn: str) -> str:
    """Fluent Bit's role: exactly the calls its output makes, on the container log group."""
    return json.dumps(
        policy_document(
            [log_group_statement(log_group_arn, "WriteContainerLogs", CLOUDWATCH_OUTPUT_ACTIONS)]
        )
    )


def _section(kind: str, options: dict[str, str | int]) -> str:
    """One section of Fluent Bit's classic configuration format."""
    width = max(len(key) for key in options)
    body = "\n".join(f"    {key.ljust(width)} {value}" for key, value in options.items())
    return f"[{kind}]\n{body}\n"


def service_config() -> str:
    return _section(
        "SERVICE",
        {
            "Daemon": "Off",
            "Flush": 1,
            "Log_Level": "info",
            "Parsers_File": "/fluent-bit/etc/parsers.conf",
            "HTTP_Server": "On",
            "HTTP_Listen": "0.0.0.0",
            "HTTP_Port": 2020,
            "Health_Check": "On",
            "storage.path": f"{STATE_DIR}/buffer",
            "storage.sync": "normal",
            "storage.max_chunks_up": MAX_CHUNKS_UP,
            "storage.backlog.mem_limit": BACKLOG_MEM_LIMIT,
        },
    )


def input_config() -> str:
    return _section(
        "INPUT",
        {
            "Name": "tail",
            "Path": "/var/log/containers/*.log",
            "Exclude_Path": OWN_LOGS,
            "multiline.parser": "docker, cri",
            "Tag": "kube.*",
            "DB": f"{STATE_DIR}/tail.db",
            "Skip_Long_Lines": "On",
            "storage.type": "filesystem",
            "storage.pause_on_chunks_overlimit": "On",
        },
    ) + _section(
        "INPUT",
        {
            "Name": "systemd",
            "Tag": "host.*",
            "Systemd_Filter": "_SYSTEMD_UNIT=kubelet.service",
            "DB": f"{STATE_DIR}/systemd.db",
            "Read_From_Tail": "On",
            "storage.type": "filesystem",
            "storage.pause_on_chunks_overlimit": "On",
        },
    )


def filter_config() -> str:
    return _section(
        "FILTER",
        {
            "Name": "kubernetes",
            "Match": "kube.*",
            # JSON log lines (the inference API's, the trainer's metrics) become fields.
            "Merge_Log": "On",
            "Keep_Log": "Off",
            # Pods may pick a parser or opt out with fluentbit.io/* annotations.
            "K8S-Logging.Parser": "On",
            "K8S-Logging.Exclude": "On",
            "Labels": "On",
            "Annotations": "Off",
        },
    )


def output_config(settings: LoggingSettings, *, region: str | None, cluster_name: str) -> str:
    """The sink; every section matches everything."""
    if settings.destination == "cloudwatch":
        assert region is not None  # the settings require mode `eks` for CloudWatch
        return _section(
            "OUTPUT",
            {
                "Name": "cloudwatch_logs",
                "Match": "*",
                "region": region,
                "log_group_name": log_group_name(cluster_name),
                # One stream per container; node logs (no Kubernetes fields) get `node.<tag>`.
                "log_stream_template": "$kubernetes['namespace_name'].$kubernetes['pod_name']."
                "$kubernetes['container_name']",
                "log_stream_prefix": "node.",
                "auto_create_group": "false",
                "retry_limit": 10,
                "storage.total_limit_size": "2G",
            },
        )
    if settings.destination == "forward":
        assert settings.forward is not None  # the settings require it
        forward = settings.forward
        return _section(
            "OUTPUT",
            {
                "Name": "forward",
                "Match": "*",
                "Host": forward.host,
                "Port": forward.port,
                "tls": "on" if forward.tls else "off",
                "tls.verify": "on" if forward.tls else "off",
                "retry_limit": 10,
                "storage.total_limit_size": "2G",
            },
        )
    return _section("OUTPUT", {"Name": "stdout", "Match": "*", "Format": "json_lines"})


def fluent_bit_values(
    settings: LoggingSettings,
    *,
    region: str | None,
    cluster_name: str,
    service_monitor: bool,
) -> dict[str, Any]:
    """Helm values: our configuration, on every node (GPU pools included), node-critical."""
    state = {"name": "state", "hostPath": {"path": STATE_DIR, "type": "DirectoryOrCreate"}}
    return {
        "fullnameOverride": "fluent-bit",
        "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
        "rbac": {"create": True},
        # A node agent runs wherever pods run, whatever the node's taints.
        "tolerations": [{"operator": "Exists"}],
        "priorityClassName": "system-node-critical",
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": MEMORY_LIMIT},
        },
        "config": {
            "service": service_config(),
            "inputs": input_config(),
            "filters": filter_config(),
            "outputs": output_config(settings, region=region, cluster_name=cluster_name),
        },
        "extraVolumes": [state],
        "extraVolumeMounts": [{"name": "state", "mountPath": STATE_DIR}],
        "serviceMonitor": {"enabled": service_monitor},
        "podLabels": labels.common("logging"),
    }


class LogShipping(pulumi.ComponentResource):
    """The log group and writer role (CloudWatch) and the Fluent Bit DaemonSet."""

    release: k8s.helm.v3.Release

    def __init__(
        self,
        name: str,
        *,
        settings: LoggingSettings,
        cluster_name: str,
        namespace: k8s.core.v1.Namespace,
        aws_cluster: aws.eks.Cluster | None,
        region: str | None,
        monitoring: pulumi.Resource | None,
        after: list[pulumi.Resource],
        kubernetes: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:logging:LogShipping", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        needs: list[pulumi.Resource] = [namespace, *after]
        if monitoring is not None:
            needs.append(monitoring)  # the ServiceMonitor CRD
        if settings.destination == "cloudwatch":
            assert aws_cluster is not None  # the settings require mode `eks` for CloudWatch
            assert region is not None
            group = encrypted_log_group(
                f"{name}-containers",
                log_group_name=log_group_name(cluster_name),
                retention_days=settings.retention_days,
                region=region,
                alias=f"eks/{cluster_name}-container-logs",
                description=f"Encryption of the container logs of EKS cluster {cluster_name}",
                parent=self,
            )
            role = ServiceRole(
                f"{name}-writer",
                service=POD_IDENTITY_PRINCIPAL,
                managed_policies=[],
                inline_policy=group.arn.apply(writer_policy),
                description=f"Fluent Bit of {cluster_name}: writes container logs",
                opts=child,
            )
            needs.append(
                aws.eks.PodIdentityAssociation(
                    f"{name}-writer",
                    cluster_name=aws_cluster.name,
                    namespace=names.LOGGING,
                    service_account=SERVICE_ACCOUNT,
                    role_arn=role.role.arn,
                    opts=child,
                )
            )
            needs.append(group)
        self.release = pinned_release(
            name,
            versions.FLUENT_BIT_CHART,
            release_name="fluent-bit",
            namespace=names.LOGGING,
            values=fluent_bit_values(
                settings,
                region=region,
                cluster_name=cluster_name,
                service_monitor=monitoring is not None,
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=kubernetes, depends_on=needs),
        )
        self.register_outputs({"release": self.release.name})

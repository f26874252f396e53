"""Synthetic GPU accounting history: the series dcgm-exporter and kube-state-metrics write for a
cluster whose GPU use is known exactly, with the label sets the pinned exporters emit and
Prometheus stores after the scrape (the program's ServiceMonitors), and the true GPU hours.

One scenario feeds both the promtool tests of the recording rules and the real-Prometheus test
of `reports.gpu`; its truth is computed from the same description, minute by minute.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from harness.program import raw_settings
from infra import gpu_cost, gpu_sharing, instances, versions
from infra.gpu_operator import operator_values
from infra.scheduling import POOL_LABEL
from infra.settings import parse_settings
from tests.upstream_facts import facts

GPU_OPERATOR = facts("gpu-operator-dcgm-exporter", pinned=versions.GPU_OPERATOR_CHART.version)
DCGM = facts("dcgm-exporter", pinned=GPU_OPERATOR["dcgm_exporter_version"])
SERVICE_MONITOR = facts(
    "prometheus-operator-servicemonitor", pinned=versions.PROMETHEUS_OPERATOR_VERSION
)
KSM_REQUESTS = facts("kube-state-metrics-pod-resources", pinned=versions.KUBE_STATE_METRICS_VERSION)
KSM = facts("kube-state-metrics-gpu-accounting", pinned=versions.KUBE_STATE_METRICS_VERSION)
STACK_CHART = facts(
    "kube-prometheus-stack-chart",
    pinned=f"kube-prometheus-stack-{versions.KUBE_PROMETHEUS_STACK_CHART.version}",
)

# Target labels Prometheus gives each exporter's targets (names from prometheus-operator, values
# made up): dcgm-exporter's pod in gpu-system, kube-state-metrics' in monitoring.
DCGM_TARGET = {
    "namespace": "gpu-system",
    "service": "nvidia-dcgm-exporter",
    "pod": "nvidia-dcgm-exporter-7xk2p",
    "container": GPU_OPERATOR["container"],
    "job": "nvidia-dcgm-exporter",
    "endpoint": "gpu-metrics",
    "instance": "10.0.4.9:9400",
}
KSM_TARGET = {
    "namespace": "monitoring",
    "service": "prometheus-stack-kube-state-metrics",
    "pod": "prometheus-stack-kube-state-metrics-6d9c7b5d4-x2x8q",
    "container": "kube-state-metrics",
    "job": "kube-state-metrics",
    "endpoint": "http",
    "instance": "10.0.3.17:8080",
}
assert set(DCGM_TARGET) == set(KSM_TARGET) == set(SERVICE_MONITOR["target_labels"])


def _scraped(
    series: dict[str, str], target: dict[str, str], monitor: dict[str, Any]
) -> dict[str, str]:
    """A series' labels after the scrape: the endpoint's labeldrop relabelings on the target
    labels, then honorLabels (the series' own labels win, the target fills in the rest) or, without
    it, clashing series labels renamed exported_*."""
    assert SERVICE_MONITOR["endpoint_relabelings_after_target_labels"] is True
    kept = dict(target)
    for relabel in monitor.get("relabelings", []):
        assert relabel["action"] == "labeldrop", "this model applies labeldrop only"
        kept = {k: v for k, v in kept.items() if not re.fullmatch(relabel["regex"], k)}
    if monitor.get("honorLabels"):
        return {**kept, **series}
    renamed = {(f"exported_{k}" if k in kept else k): v for k, v in series.items()}
    return {**renamed, **kept}


def _dcgm_monitor() -> dict[str, Any]:
    """The dcgm-exporter ServiceMonitor settings the program gives the GPU Operator."""
    settings = parse_settings(raw_settings("prod"), "prod")
    monitor: dict[str, Any] = operator_values(settings)["dcgmExporter"]["serviceMonitor"]
    return monitor


# kube-prometheus-stack's ServiceMonitor for kube-state-metrics keeps the series' labels.
KSM_MONITOR = {"honorLabels": STACK_CHART["kube_state_metrics_honor_labels"]}


def _ksm_resource(name: str) -> str:
    return re.sub(
        KSM_REQUESTS["resource_invalid_chars"], KSM_REQUESTS["resource_replacement"], name
    )


def ksm_label(name: str) -> str:
    """kube-state-metrics' label for a Kubernetes label (the fixture's rule, not the program's)."""
    sanitised = re.sub(KSM["label_invalid_chars"], "_", name)
    prefix: str = KSM["label_prefix"]
    return prefix + re.sub(KSM["label_camel_case"], r"\1_\2", sanitised).lower()


@dataclass(frozen=True)
class Node:
    name: str
    pool: str
    instance_type: str
    # What its GPUs are advertised as: nvidia.com/gpu, or time-sliced shares.
    resource: str = gpu_sharing.GPU
    replicas: int = 1

    @property
    def gpus(self) -> int:
        return instances.GPU_INSTANCE_TYPES[self.instance_type].gpus

    @property
    def units(self) -> int:
        return self.gpus * self.replicas


@dataclass(frozen=True)
class Pod:
    """A pod requesting `units` of its node's GPU resource from minute `start` to `end` (its
    phase Running), then `Failed` (or Succeeded) for `linger` minutes before it is deleted.  `gpus`:
    the GPU indices the kubelet gave it (whole GPUs; none for shares).  `node` None: Pending."""

    team: str
    name: str
    uid: str
    node: Node | None
    start: int
    end: int
    units: int = 1
    # On a node that shares unrenamed `nvidia.com/gpu`: the GPU its share is on.
    gpus: tuple[int, ...] = ()
    container: str = "main"
    resource: str | None = None
    end_phase: str = "Succeeded"
    linger: int = 10

    @property
    def requested(self) -> str:
        if self.resource:
            return self.resource
        assert self.node is not None
        return self.node.resource


@dataclass
class Scenario:
    """A cluster's history in minutes from 0 to `minutes`: nodes, pods, and each GPU's
    utilisation as (from minute, percent) steps."""

    minutes: int
    nodes: list[Node]
    pods: list[Pod]
    utilisation: dict[tuple[str, int], list[tuple[int, float]]] = field(default_factory=dict)

    def util(self, node: str, gpu: int, minute: int) -> float:
        value = 0.0
        for start, percent in self.utilisation.get((node, gpu), []):
            if minute >= start:
                value = percent
        return value

    def holder(self, node: Node, gpu: int, minute: int) -> Pod | None:
        """The pod dcgm-exporter maps this GPU to at this minute: its pod for a whole GPU; for a
        GPU shared as unrenamed `nvidia.com/gpu`, the last of its sharing pods (each overwrites
        the map entry); a renamed share, none (those pods have no `gpus`)."""
        holders = [
            pod
            for pod in self.pods
            if pod.node == node and gpu in pod.gpus and pod.start <= minute < pod.end
        ]
        if len(holders) > 1:
            assert DCGM["shared_device_maps_to_one_pod"] is True
            assert node.replicas > 1, "only a shared GPU has several pods"
        return holders[-1] if holders else None

    # --- the series ------------------------------------------------------------------------

    def series(self) -> Iterator[tuple[str, dict[str, str], list[float | None]]]:
        """(metric, labels as stored, value per minute or None where the series is absent)."""
        monitor = _dcgm_monitor()
        for node in self.nodes:
            yield from self._node_series(node)
            for index in range(node.gpus):
                yield from self._gpu_series(node, index, monitor)
        for pod in self.pods:
            yield from self._pod_series(pod)

    def _ksm(self, labels: dict[str, str]) -> dict[str, str]:
        return _scraped(labels, KSM_TARGET, KSM_MONITOR)

    def _always(self, value: float) -> list[float | None]:
        return [value] * self.minutes

    def _node_series(self, node: Node) -> Iterator[tuple[str, dict[str, str], list[float | None]]]:
        node_labels = {
            "node": node.name,
            ksm_label(POOL_LABEL): node.pool,
            ksm_label("node.kubernetes.io/instance-type"): node.instance_type,
        }
        assert set(KSM["node_labels_default"]) <= set(node_labels)
        yield "kube_node_labels", self._ksm(node_labels), self._always(1)
        capacity = {
            "node": node.name,
            "resource": _ksm_resource(node.resource),
            "unit": KSM["extended_resource_unit"],
        }
        assert set(capacity) == set(KSM["capacity_labels"])
        yield "kube_node_status_capacity", self._ksm(capacity), self._always(node.units)
        cpu = {**capacity, "resource": "cpu", "unit": "core"}
        yield "kube_node_status_capacity", self._ksm(cpu), self._always(48)

    def _gpu_labels(self, node: Node, index: int, holder: Pod | None) -> dict[str, str]:
        exporter = {
            "gpu": str(index),
            "UUID": f"GPU-{node.name}-{index}",
            "pci_bus_id": f"00000000:00:1{index}.0",
            "device": f"nvidia{index}",
            "modelName": instances.GPU_INSTANCE_TYPES[node.instance_type].gpu_model,
            "hostname": node.name,
        }
        assert set(exporter) == set(DCGM["gpu_labels"])
        if holder is not None:
            assert holder.requested in DCGM["mapped_resources"] or holder.requested.startswith(
                tuple(DCGM["mapped_resource_prefixes"])
            ), "dcgm-exporter maps only whole GPUs and MIG slices to pods"
            mapped = {"namespace": holder.team, "pod": holder.name, "container": holder.container}
            assert set(mapped) == set(DCGM["pod_labels"])
            exporter.update(mapped)
        return exporter

    def _gpu_series(
        self, node: Node, index: int, monitor: dict[str, Any]
    ) -> Iterator[tuple[str, dict[str, str], list[float | None]]]:
        """DCGM_FI_DEV_GPU_UTIL and _TEMP; a new series whenever the GPU's holder changes."""
        by_labels: dict[tuple[tuple[str, str], ...], dict[str, list[float | None]]] = {}
        for minute in range(self.minutes):
            labels = _scraped(
                self._gpu_labels(node, index, self.holder(node, index, minute)),
                DCGM_TARGET,
                monitor,
            )
            key = tuple(sorted(labels.items()))
            values = by_labels.setdefault(
                key,
                {
                    "DCGM_FI_DEV_GPU_UTIL": [None] * self.minutes,
                    "DCGM_FI_DEV_GPU_TEMP": [None] * self.minutes,
                },
            )
            values["DCGM_FI_DEV_GPU_UTIL"][minute] = self.util(node.name, index, minute)
            values["DCGM_FI_DEV_GPU_TEMP"][minute] = 45.0
        for key, metrics in by_labels.items():
            for metric, samples in metrics.items():
                yield metric, dict(key), samples

    def _pod_series(self, pod: Pod) -> Iterator[tuple[str, dict[str, str], list[float | None]]]:
        gone = pod.end + pod.linger if pod.node is not None else self.minutes
        alive = [minute < gone for minute in range(self.minutes)]
        request = {
            "namespace": pod.team,
            "pod": pod.name,
            "uid": pod.uid,
            "container": pod.container,
            "node": pod.node.name if pod.node else "",
            "resource": _ksm_resource(pod.requested),
            "unit": "core" if pod.requested == "cpu" else KSM["extended_resource_unit"],
        }
        assert set(request) == set(KSM_REQUESTS["requests_labels"])
        yield (
            "kube_pod_container_resource_requests",
            self._ksm(request),
            [float(pod.units) if a else None for a in alive],
        )
        for phase in KSM["phases"]:
            labels = {"namespace": pod.team, "pod": pod.name, "uid": pod.uid, "phase": phase}
            assert set(labels) == set(KSM["phase_labels"])
            values: list[float | None] = []
            for minute in range(self.minutes):
                if minute < pod.start or not alive[minute]:
                    values.append(None)
                elif pod.node is None:
                    values.append(1.0 if phase == "Pending" else 0.0)
                elif minute < pod.end:
                    values.append(1.0 if phase == "Running" else 0.0)
                else:
                    values.append(1.0 if phase == pod.end_phase else 0.0)
            yield "kube_pod_status_phase", self._ksm(labels), values

    # --- the truth -------------------------------------------------------------------------

    def truth(self, start: int, end: int) -> dict[tuple[str, str, str], dict[str, float]]:
        """GPU hours allocated, busy and idle per (team, pool, instance type), minutes
        [start, end), from the description (not from the series)."""
        totals: dict[tuple[str, str, str], dict[str, float]] = defaultdict(
            lambda: {"allocated": 0.0, "busy": 0.0, "idle": 0.0}
        )
        for pod in self.pods:
            node = pod.node
            if node is None or pod.requested != node.resource:
                continue
            weight = pod.units / node.replicas  # GPUs the pod holds
            key = (pod.team, node.pool, node.instance_type)
            for minute in range(max(start, pod.start), min(end, pod.end)):
                totals[key]["allocated"] += weight / 60
                if node.replicas == 1:
                    utils = [self.util(node.name, g, minute) for g in pod.gpus]
                else:  # a share, mapped to a pod or not: its node's mean utilisation
                    utils = [
                        sum(self.util(node.name, g, minute) for g in range(node.gpus)) / node.gpus
                    ] * pod.units
                    weight_each = weight / pod.units
                    totals[key]["busy"] += sum(u / 100 * weight_each for u in utils) / 60
                    totals[key]["idle"] += (
                        sum(weight_each for u in utils if u < gpu_cost.IDLE_BELOW) / 60
                    )
                    continue
                totals[key]["busy"] += sum(u / 100 for u in utils) / 60
                totals[key]["idle"] += sum(1 for u in utils if u < gpu_cost.IDLE_BELOW) / 60
        return dict(totals)


def two_days() -> Scenario:
    """Two teams on a 4-GPU training node, three on a time-sliced serving node (4 shares per
    GPU), and two on a node that time-slices without renaming (`renameShared: false`: 4 shares
    advertised as `nvidia.com/gpu`, which dcgm-exporter maps to one of the pods sharing the GPU),
    over 48 hours: a trainer restarted (same pod name, new uid), a notebook idle for 12 hours,
    the serving GPU idle for 6, the unrenamed GPU idle for 4 while two pods hold it, a pod that
    never gets a GPU, a CPU-only pod, and two GPUs nobody holds."""
    hour = 60
    train = Node("ip-10-0-1-17.ec2.internal", "training", "g5.12xlarge")
    serve = Node(
        "ip-10-0-2-31.ec2.internal", "serving", "g5.xlarge", gpu_sharing.SHARED_GPU, replicas=4
    )
    unrenamed = Node(
        "ip-10-0-3-44.ec2.internal", "notebooks", "g5.xlarge", gpu_sharing.GPU, replicas=4
    )
    end = 48 * hour + 30  # past the end of the history: still running
    pods = [
        Pod("research", "trainer-worker-0", "uid-a", train, 0, 20 * hour, gpus=(0,),
            container="tensorflow", end_phase="Failed"),
        Pod("research", "trainer-worker-0", "uid-b", train, 20 * hour + 10, 40 * hour, gpus=(0,),
            container="tensorflow"),
        Pod("vision", "notebook-0", "uid-c", train, 2 * hour, 46 * hour, gpus=(1,),
            container="notebook"),
        Pod("research", "tfserving-mnist-7c4b-a", "uid-d", serve, 0, end, container="tfs"),
        Pod("research", "tfserving-mnist-7c4b-b", "uid-e", serve, 0, end, container="tfs"),
        Pod("nlp", "tfserving-bert-5f6d-a", "uid-f", serve, 12 * hour, end, container="tfs"),
        # Waits for a GPU the whole time: never allocated.
        Pod("vision", "trainer-worker-1", "uid-g", None, 0, 48 * hour, resource=gpu_sharing.GPU),
        # Runs on the training node with CPU only.
        Pod("vision", "prepare-data", "uid-h", train, 0, end, resource="cpu"),
        # Two shares of the unrenamed GPU: the exporter names the later pod while both run.
        Pod("research", "notebook-1", "uid-i", unrenamed, 0, end, gpus=(0,),
            container="notebook"),
        Pod("vision", "notebook-2", "uid-j", unrenamed, 6 * hour, 42 * hour, gpus=(0,),
            container="notebook"),
    ]  # fmt: skip
    utilisation = {
        (train.name, 0): [(0, 90.0), (20 * hour, 0.0), (20 * hour + 10, 80.0), (40 * hour, 0.0)],
        (train.name, 1): [(0, 0.0), (2 * hour, 60.0), (10 * hour, 1.0), (22 * hour, 60.0),
                          (46 * hour, 0.0)],
        (serve.name, 0): [(0, 40.0), (30 * hour, 2.0), (36 * hour, 40.0)],
        (unrenamed.name, 0): [(0, 40.0), (8 * hour, 80.0), (12 * hour, 2.0), (16 * hour, 40.0)],
    }  # fmt: skip
    return Scenario(end, [train, serve, unrenamed], pods, utilisation)


# --- writers -------------------------------------------------------------------------------


def _label_text(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


def _number(value: float) -> str:
    return repr(float(value)).removesuffix(".0")


def promtool_series(scenario: Scenario) -> list[dict[str, str]]:
    """`input_series` for promtool test rules, one sample a minute from minute 0."""
    found = []
    for metric, labels, values in scenario.series():
        tokens: list[str] = []
        index = 0
        while index < len(values):
            value = values[index]
            run = index
            while run + 1 < len(values) and values[run + 1] == value:
                run += 1
            if value is None:
                tokens.append(f"_x{run - index + 1}")
            else:
                tokens.append(f"{_number(value)}x{run - index}")
            index = run + 1
        found.append({"series": f"{metric}{{{_label_text(labels)}}}", "values": " ".join(tokens)})
    return found


def openmetrics(scenario: Scenario, start: int) -> str:
    """The scenario as OpenMetrics text for `promtool tsdb create-blocks-from openmetrics`: one
    sample a minute from unix time `start`, every family a gauge."""
    families: dict[str, list[str]] = defaultdict(list)
    for metric, labels, values in scenario.series():
        text = _label_text(labels)
        families[metric] += [
            f"{metric}{{{text}}} {_number(value)} {start + 60 * minute}"
            for minute, value in enumerate(values)
            if value is not None
        ]
    lines = []
    for metric, samples in sorted(families.items()):
        lines.append(f"# TYPE {metric} gauge")
        lines += samples
    lines.append("# EOF")
    return "\n".join(lines) + "\n"

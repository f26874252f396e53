"""Serving one model: TF Serving, and the inference API beside it, in the `serving` namespace.

TF Serving reads the versions the team's training jobs export (`/models/<team>/<job>/<version>`)
from the shared `models` volume, mounted read-only, and reloads new ones as they appear.  Ports
are named for what they carry: `grpc` 8500, `http` 8501.  Nothing is exposed outside the cluster
unless a model asks for an internal load balancer.
"""

from __future__ import annotations

import math
from typing import Any

from infra import gpu_sharing, labels, names, versions
from infra.image_mirror import mirrored
from infra.monitoring import PROMETHEUS_PODS, service_monitor
from infra.pod_security import restricted_container, restricted_pod
from infra.priorities import SERVING
from infra.scheduling import SYSTEM_POOL, placement
from infra.settings import Settings
from infra.settings.base import quantity_value
from infra.settings.serving import ServedModelSettings
from infra.team_network import namespace_peer
from workloads.manifests import MODELS_DIR, export_dir

GRPC_PORT = 8500
# The gRPC health service name TF Serving reports for predictions (see the probes below).
HEALTH_SERVICE = "PredictionService"
HTTP_PORT = 8501
API_PORT = 8080
# What callers of a model may reach: TF Serving's gRPC and REST ports, the inference API's.
MODEL_PORTS = (GRPC_PORT, HTTP_PORT, API_PORT)
CONFIG_DIR = "/config"
METRICS_PATH = "/monitoring/prometheus/metrics"
# How long TF Serving may wait for its model's first version before the kubelet restarts it.
FIRST_VERSION_WAIT_S = 7 * 24 * 3600
# Tells the Kubernetes provider not to wait for a Deployment's pods to become Ready
# (pulumi/pulumi-kubernetes@94977969, read for 4.34.2: provider/pkg/metadata/overrides.go
# L39-42, L100-119; provider/pkg/await/await.go L1096-1103).
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
# The HPAs' CPU target, as a share of the pods' CPU request, chosen to add replicas before any
# replica sheds (503 / UNAVAILABLE).  A server sheds once it needs more CPU than it gets, and
# only its request is sure to be there (above it, it borrows the node's idle CPU), so 100% of
# the request is where shedding can start.  The controller acts on the average over the replicas
# and only past its tolerance, 10% above the target; a replica it adds serves only after a sync
# (every 15 s), a fresh metrics-server sample and the model's load.  The tolerance (0.1) and the
# sync period (15 s) are kube-controller-manager's --horizontal-pod-autoscaler-tolerance and
# --horizontal-pod-autoscaler-sync-period defaults as the Kubernetes documentation ("Horizontal
# Pod Autoscaling") states them; they are not verified in the source at the cluster's version.
# Keep-alive connections, balanced per connection, also load some replicas above the average.
# At 60%, scale-out starts at 66% of the shedding point: 1.5x headroom, enough for traffic to
# grow by half while the new replicas start, or for the hottest replica to run half again above
# the average, before shedding begins; not for both at once.
SCALE_OUT_UTILIZATION = 60
HPA_TOLERANCE = 0.1


def tfserving_name(model: ServedModelSettings) -> str:
    return f"tfserving-{model.name}"


def inference_name(model: ServedModelSettings) -> str:
    return f"inference-{model.name}"


def base_path(model: ServedModelSettings) -> str:
    """Where the trainer exports this model: TF Serving's base path."""
    return export_dir(model.team, model.export_job)


def batching_parameters(model: ServedModelSettings) -> dict[str, int]:
    """TF Serving's BatchingParameters for the model, with its queue bounded.

    TF Serving runs `num_batch_threads` batches at once and queues at most
    `max_enqueued_batches` more (tensorflow/serving@2.20.0: tensorflow_serving/servables/
    tensorflow/session_bundle_config.proto L149-173, tensorflow_serving/batching/README.md
    L112-118, which do not name the status).  A request that would need another batch is refused
    at once with UNAVAILABLE: TensorFlow core's tensorflow/core/kernels/batching_util/
    shared_batch_scheduler.h, `QueueOptions::max_enqueued_batches`, "If this limit is reached,
    Schedule() will return an UNAVAILABLE error" -- read in a copy not tied to
    tensorflow/tensorflow@72fbba3d20f4616d7312b5e2b7f79daf6e82f2fa, the commit TF Serving 2.20.0
    builds against (tensorflow/serving@2.20.0:WORKSPACE L28), so unverified at that commit.  Its
    REST API answers 503 (model_servers/http_server.cc L78-79) and counts in
    :tensorflow:serving:request_count{status="UNAVAILABLE"} (http_server.cc L201;
    servables/tensorflow/util.cc L117-123), so TfServingErrorRate sees it.  The guide's advice
    for online serving is one thread per CPU core and as many queued batches as threads, "to
    minimize queueing delay at a given server while keeping it busy" (README.md L129-135,
    L143-149): a request then waits about one batch's run at most, and a replica past its
    capacity sheds instead of building a backlog that would hold the HPA's new replicas back.
    The cores are the container's CPU limit, rounded up: the most it can use at once.
    """
    batching = model.batching
    threads = batching.num_batch_threads or max(1, math.ceil(quantity_value(model.cpu_limit)))
    return {
        "max_batch_size": batching.max_batch_size,
        "batch_timeout_micros": batching.batch_timeout_micros,
        "max_enqueued_batches": batching.max_enqueued_batches or threads,
        "num_batch_threads": threads,
    }


def server_configs(model: ServedModelSettings) -> dict[str, str]:
    """TF Serving's model, batching and monitoring configuration files (protobuf text)."""
    return {
        "models.config": (
            "model_config_list {\n"
            "  config {\n"
            f"    name: '{model.name}'\n"
            f"    base_path: '{base_path(model)}'\n"
            "    model_platform: 'tensorflow'\n"
            "    model_version_policy { latest { num_versions: 1 } }\n"
            "  }\n"
            "}\n"
        ),
        "batching.config": "".join(
            f"{field} {{ value: {value} }}\n" for field, value in batching_parameters(model).items()
        ),
        "monitoring.config": (f'prometheus_config {{ enable: true, path: "{METRICS_PATH}" }}\n'),
    }


def _meta(name: str, component: str, model: ServedModelSettings) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": names.SERVING,
        "labels": {
            **labels.common("serving"),
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/component": component,
            f"{labels.PREFIX}/model": model.name,
            # The team whose model it is: the ServiceMonitors copy it onto every series, so
            # the serving alerts can name the team (infra/alerts.py).
            labels.TEAM: model.team,
        },
    }


def _spread(selector: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector},
        }
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]


def _pod(
    settings: Settings,
    pool: str,
    selector: dict[str, str],
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
) -> dict[str, Any]:
    where = placement(settings, pool)
    spec: dict[str, Any] = {
        "priorityClassName": SERVING,
        "automountServiceAccountToken": False,
        "securityContext": restricted_pod(settings.storage.file_owner),
        "topologySpreadConstraints": _spread(selector),
        "containers": [container],
        "volumes": [
            {
                "name": "models",
                "persistentVolumeClaim": {
                    "claimName": settings.storage.models.name,
                    "readOnly": True,
                },
            },
            {"name": "tmp", "emptyDir": {}},
            *volumes,
        ],
    }
    spec.update(where.pod_fields())
    return spec


def _deployment(
    meta: dict[str, Any],
    selector: dict[str, str],
    pod: dict[str, Any],
    model: ServedModelSettings,
) -> dict[str, Any]:
    metadata = dict(meta)
    if not model.await_ready:
        # The provider's await for a Deployment ends only when every pod is Ready, within 10
        # minutes (pulumi/pulumi-kubernetes@94977969: provider/pkg/await/deployment.go
        # L418-440, await.go L306-309), and a server is Ready only once a version is loaded.  On
        # a new stack the first version comes from a training job the same `pulumi up` starts,
        # so waiting would fail the update; the pods wait for the version unready instead.
        metadata["annotations"] = {**meta.get("annotations", {}), **SKIP_AWAIT}
    # No `replicas`: the HorizontalPodAutoscaler owns the count.
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {"metadata": {"labels": {**meta["labels"], **selector}}, "spec": pod},
        },
    }


def _availability(
    meta: dict[str, Any], selector: dict[str, str], replicas: Any
) -> list[dict[str, Any]]:
    """A PodDisruptionBudget and a CPU-driven HorizontalPodAutoscaler for a Deployment."""
    return [
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta,
            "spec": {
                "minAvailable": 1,
                "selector": {"matchLabels": selector},
                # A server waiting for its first model version is Running but not Ready.  Under
                # the default (IfHealthyBudget) such a pod may be evicted only while the budget
                # holds, which it never does before a version loads, so it would block every
                # node drain (cluster-autoscaler scale-down, node-group upgrades).  AlwaysAllow
                # lets unready pods go; Ready ones stay under the budget (API reference,
                # PodDisruptionBudgetSpec.unhealthyPodEvictionPolicy, stable since 1.31).
                "unhealthyPodEvictionPolicy": "AlwaysAllow",
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": meta,
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": meta["name"],
                },
                "minReplicas": replicas.min,
                "maxReplicas": replicas.max,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": SCALE_OUT_UTILIZATION,
                            },
                        },
                    }
                ],
            },
        },
    ]


def tfserving_objects(settings: Settings, model: ServedModelSettings) -> list[dict[str, Any]]:
    """ConfigMap, Deployment, Service, PodDisruptionBudget, HPA (and an internal NLB if asked)."""
    name = tfserving_name(model)
    meta = _meta(name, "model-server", model)
    selector = {"app.kubernetes.io/name": name}
    gpu_pool = next((p for p in settings.node_pools.gpu if p.name == model.pool), None)
    args = [
        f"--port={GRPC_PORT}",
        f"--rest_api_port={HTTP_PORT}",
        f"--model_config_file={CONFIG_DIR}/models.config",
        "--model_config_file_poll_wait_seconds=60",
        "--enable_batching=true",
        f"--batching_parameters_file={CONFIG_DIR}/batching.config",
        f"--monitoring_config_file={CONFIG_DIR}/monitoring.config",
        # gRPC health for the probes (tensorflow/serving@2.20.0:
        # tensorflow_serving/model_servers/main.cc L308-310).
        "--enable_grpc_healthcheck_service=true",
    ]
    limits: dict[str, Any] = {"cpu": model.cpu_limit, "memory": model.memory_limit}
    image = versions.TF_SERVING_IMAGE
    if gpu_pool is not None:
        image = versions.TF_SERVING_GPU_IMAGE
        limits[gpu_sharing.resource_name(gpu_pool)] = 1
        if gpu_pool.sharing.mode == "time-slicing":
            # Time slices share the GPU's memory with no isolation: each server takes its share.
            fraction = round(0.9 / (gpu_pool.sharing.replicas or 1), 2)
            args.append(f"--per_process_gpu_memory_fraction={fraction}")
    # Probes ask gRPC health, never the REST API: every REST request under /v1/, the model-status
    # GET included, is counted in :tensorflow:serving:request_count and its latency
    # (tensorflow/serving@2.20.0:tensorflow_serving/model_servers/http_server.cc L141, L194-201),
    # so REST probes would pass for traffic and dilute the error rate.  With the flag above, the
    # server marks PredictionService SERVING as its gRPC server starts, which is only after the
    # configured models have loaded (@2.20.0:tensorflow_serving/model_servers/server.cc L332,
    # L415-424): ready still means "a model is in service" at startup.  Nothing sets it back
    # later: a model that goes away afterwards shows in TfServingErrorRate, not in readiness.
    # A gRPC probe's port is a number.
    health_probe = {"grpc": {"port": GRPC_PORT, "service": HEALTH_SERVICE}}
    # Before its model's first version exists TF Serving opens neither port and waits for one
    # without limit, polling the base path every second (a missing one is logged, not fatal);
    # a first version that fails to load makes it exit after 5 retries a minute apart
    # (tensorflow/serving@2.20.0: model_servers/server.h L68-69,
    # tensorflow_serving/core/load_servables_fast.cc L87, core/servable_state_monitor.cc
    # L65-79, L260-265, sources/storage_path/file_system_storage_path_source.cc L255-262,
    # L413-418, model_servers/server.h L70, model_servers/main.cc L342-346).  The startup
    # probe only holds liveness back until the server listens, so its window is long enough for
    # a first training: the server waits unready, and turns Ready by itself when the trainer
    # exports version 1.
    startup_period = 10
    container = {
        "name": "tfserving",
        "image": mirrored(settings, image),
        "command": ["tensorflow_model_server"],
        "args": args,
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT},
            {"name": "http", "containerPort": HTTP_PORT},
        ],
        # Waiting for a first version, or loading a model, can take long; liveness only starts
        # once the model is in service, and neither gets the pod restarted within a week.
        "startupProbe": {
            **health_probe,
            "periodSeconds": startup_period,
            "failureThreshold": FIRST_VERSION_WAIT_S // startup_period,
        },
        "readinessProbe": {**health_probe, "periodSeconds": 10},
        # Liveness only asks that the gRPC port accepts connections: a server too busy to answer
        # a health call in time is taken out of the Service by readiness, not restarted.
        "livenessProbe": {"tcpSocket": {"port": "grpc"}, "periodSeconds": 20},
        "resources": {
            "requests": {
                "cpu": model.cpu,
                "memory": model.memory,
                **{k: v for k, v in limits.items() if k not in ("cpu", "memory")},
            },
            "limits": limits,
        },
        "securityContext": restricted_container(),
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR, "readOnly": True},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod = _pod(
        settings,
        model.pool if gpu_pool else SYSTEM_POOL,
        selector,
        container,
        [{"name": "config", "configMap": {"name": name}}],
    )
    ports = [
        {
            "name": "grpc",
            "port": GRPC_PORT,
            "targetPort": "grpc",
            "appProtocol": "kubernetes.io/h2c",
        },
        {"name": "http", "port": HTTP_PORT, "targetPort": "http", "appProtocol": "http"},
    ]
    objects = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": server_configs(model)},
        _deployment(meta, selector, pod, model),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"type": "ClusterIP", "selector": selector, "ports": ports},
        },
        *_availability(meta, selector, model.replicas),
    ]
    if model.exposure == "internalLoadBalancer":
        internal = {**meta, "name": f"{name}-internal"}
        internal["annotations"] = {
            "service.beta.kubernetes.io/aws-load-balancer-type": "external",
            "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
            "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
        }
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": internal,
                "spec": {"type": "LoadBalancer", "selector": selector, "ports": ports[1:]},
            }
        )
    return objects


def ingress_policy_specs(settings: Settings) -> dict[str, dict[str, Any]]:
    """NetworkPolicies admitting callers to the served models, beside the namespace's baseline.

    Any pod in the cluster may call TF Serving (gRPC and REST) and the inference APIs on their
    ports (team namespaces allow it on their side, infra/team_network.py); Prometheus's own pods
    may scrape the ports the ServiceMonitors name; nothing else gets in.  A model behind an
    internal NLB also admits the NLB's traffic (IP targets: it comes from addresses in the VPC,
    never from pods), on REST only.
    """
    components = {"matchExpressions": [
        {"key": "app.kubernetes.io/component", "operator": "In",
         "values": ["model-server", "inference-api"]},
    ]}  # fmt: skip
    specs: dict[str, dict[str, Any]] = {
        "serving-ingress": {
            "podSelector": components,
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"namespaceSelector": {}}],
                    "ports": [{"protocol": "TCP", "port": port} for port in MODEL_PORTS],
                }
            ],
        }
    }
    # What scrape_objects has Prometheus scrape: TF Serving's REST port, the inference API's.
    scraped = sorted(
        {HTTP_PORT for _ in settings.serving.models}
        | {API_PORT for m in settings.serving.models if m.inference_api.enabled}
    )
    if settings.monitoring.enabled and scraped:
        specs["prometheus"] = {
            "podSelector": components,
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            **namespace_peer(names.MONITORING),
                            "podSelector": {"matchLabels": PROMETHEUS_PODS},
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": port} for port in scraped],
                }
            ],
        }
    for model in settings.serving.models:
        if model.exposure == "internalLoadBalancer":
            specs[f"{tfserving_name(model)}-load-balancer"] = {
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": tfserving_name(model)}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                        "ports": [{"protocol": "TCP", "port": HTTP_PORT}],
                    }
                ],
            }
    return specs


def inference_objects(
    settings: Settings, model: ServedModelSettings, image: Any
) -> list[dict[str, Any]]:
    """The inference API for the model: Deployment, Service, PodDisruptionBudget, HPA."""
    api = model.inference_api
    name = inference_name(model)
    meta = _meta(name, "inference-api", model)
    selector = {"app.kubernetes.io/name": name}
    container = {
        "name": "inference",
        "image": mirrored(settings, image),
        "command": [
            "python",
            "-m",
            "inference.server",
            "--model-base-path",
            base_path(model),
            "--model-name",
            model.name,
            "--port",
            str(API_PORT),
            "--max-batch-size",
            str(api.max_batch_size),
            "--batch-timeout-ms",
            f"{api.batch_timeout_ms:g}",
            "--max-queue-ms",
            f"{api.max_queue_ms:g}",
        ],
        "env": [{"name": "HOME", "value": "/tmp"}],
        "ports": [{"name": "http", "containerPort": API_PORT}],
        # The server listens once a version present at start has loaded, or at once when there
        # is none (inference/app.py): startup asks only that it answers, so a server waiting for
        # its first version is never restarted; readiness keeps traffic away until one loads.
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 60,
        },
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 10},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 20},
        "resources": {
            "requests": {"cpu": api.cpu, "memory": api.memory},
            "limits": {"cpu": api.cpu_limit, "memory": api.memory},
        },
        "securityContext": restricted_container(),
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod = _pod(settings, SYSTEM_POOL, selector, container, [])
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "appProtocol": "http"}],
        },
    }
    return [
        _deployment(meta, selector, pod, model),
        service,
        *_availability(meta, selector, api.replicas),
    ]


def scrape_objects(model: ServedModelSettings) -> list[dict[str, Any]]:
    """ServiceMonitors for TF Serving's metrics (on its REST port) and the inference API's."""
    monitors = [
        service_monitor(
            tfserving_name(model),
            names.SERVING,
            {"app.kubernetes.io/name": tfserving_name(model)},
            "http",
            METRICS_PATH,
            target_labels=[labels.TEAM],
        )
    ]
    if model.inference_api.enabled:
        monitors.append(
            service_monitor(
                inference_name(model),
                names.SERVING,
                {"app.kubernetes.io/name": inference_name(model)},
                "http",
                "/metrics",
                target_labels=[labels.TEAM],
            )
        )
    return monitors

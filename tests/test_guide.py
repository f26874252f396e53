"""docs/ml-engineer-guide.md names only what the `dev` stack really renders.

Every command and address in the guide's code blocks is read: each `kubectl` command's namespace,
the objects it names (`svc/<name>`, `tfjob <name>`, pods, label selectors, containers), the
Service port it forwards to, what `auth can-i` asks about; every in-cluster address
(`http://<service>.<namespace>[:port]`, `<service>.<namespace>:<port>`, the API server's proxy
path); the cluster and region of `aws eks update-kubeconfig`; and the dashboards named in bold.
They are checked against the rendered manifests of `dev`, and, for what controllers, charts and
bundles make of them, against the upstream facts the other tests use.
"""

from __future__ import annotations

import json
import re
import shlex
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubeflow_katib_api.models import V1beta1ExperimentStatus

from harness.program import stack_config, stack_settings
from harness.render import kubernetes_objects
from infra import names, versions
from tests.conftest import stack_run
from tests.upstream_facts import facts

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "ml-engineer-guide.md"
STACK = "dev"
LOCAL_HOSTS = ("localhost", "127.0.0.1")
# `kubectl get|describe <kind> <name>`: the kinds the guide names objects of.
KINDS = {
    "tfjob": "TFJob",
    "notebook": "Notebook",
    "experiment": "Experiment",
    "resourcequota": "ResourceQuota",
    "limitrange": "LimitRange",
}


@dataclass
class Rendered:
    """What `dev` has, by namespace: objects by kind, Services with their ports, pod names."""

    namespaces: set[str]
    objects: dict[tuple[str, str], set[str]]  # (namespace, kind) -> names
    services: dict[tuple[str, str], dict[int, str | None]]  # (namespace, name) -> port -> name
    pods: set[tuple[str, str]]
    selectors: dict[str, tuple[str, str]]  # label key -> the kind whose name it carries
    containers: set[str]
    dashboards: set[str]
    engineer_rules: list[dict[str, Any]]
    region: str
    cluster: str
    problems: list[str] = field(default_factory=list)


def _rendered() -> Rendered:
    run = stack_run(STACK)
    objects = kubernetes_objects(run)
    settings = stack_settings(STACK)
    found = Rendered(
        namespaces={o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"},
        objects={},
        services={},
        pods=set(),
        selectors={},
        containers=set(),
        dashboards=set(),
        engineer_rules=[],
        region=settings.aws.region if settings.aws else "",
        cluster=settings.cluster.name,
    )
    for obj in objects:
        meta = obj["metadata"]
        namespace = meta.get("namespace", "")
        found.objects.setdefault((namespace, obj["kind"]), set()).add(meta["name"])
        if obj["kind"] == "Service":
            found.services[(namespace, meta["name"])] = {
                p["port"]: p.get("name") for p in obj["spec"]["ports"]
            }
        if obj["kind"] == "ConfigMap" and "grafana_dashboard" in meta.get("labels", {}):
            found.dashboards |= {json.loads(v)["title"] for v in obj["data"].values()}
        if obj["kind"] == "Role" and meta["name"] == "ml-engineer":
            found.engineer_rules += obj["rules"]
    _add_controller_made(found, objects)
    _add_installed(found, run)
    return found


def _add_controller_made(found: Rendered, objects: list[dict[str, Any]]) -> None:
    """The TFJobs' pods (and the label carrying their job's name), the Notebooks' Services."""
    trainer = facts("kubeflow-trainer-pods", pinned=versions.TRAINING_OPERATOR.ref)
    notebook = facts("kubeflow-notebook-pods", pinned=versions.NOTEBOOK_CONTROLLER.ref)
    for obj in objects:
        namespace, name = obj["metadata"].get("namespace", ""), obj["metadata"]["name"]
        if obj["kind"] == "TFJob":
            for replica, spec in obj["spec"]["tfReplicaSpecs"].items():
                for index in range(int(spec.get("replicas", 1))):
                    pod = trainer["pod_name"].format(job=name, type=replica.lower(), index=index)
                    found.pods.add((namespace, pod))
        if obj["kind"] == "Notebook":
            found.services[(namespace, name)] = {notebook["service"]["port"]: None}
    for key, value in trainer["pod_labels"].items():
        if value == "{job}":
            found.selectors[key] = ("TFJob", "name")


def _add_installed(found: Rendered, run: Any) -> None:
    """Services the charts and bundles the stack installs make, and Katib's names."""
    settings = stack_settings(STACK)
    [release] = [
        r
        for r in run.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs["chart"] == versions.KUBE_PROMETHEUS_STACK_CHART.chart
    ]
    grafana = facts(
        "grafana-service", pinned=f"grafana-{versions.KUBE_PROMETHEUS_STACK_GRAFANA_CHART}"
    )["service"]
    fullname = release.inputs["values"]["grafana"]["fullnameOverride"]
    found.services[(release.inputs["namespace"], grafana["name"].format(fullname=fullname))] = {
        grafana["port"]: grafana["port_name"]
    }
    if settings.kubeflow.pipelines.enabled:
        kfp = facts("kubeflow-pipelines-access", pinned=versions.KFP_REF)
        for name, spec in kfp["services"].items():
            found.services[(names.KUBEFLOW, name)] = {p["port"]: p["name"] for p in spec["ports"]}
    if settings.kubeflow.katib.enabled:
        katib = facts("kubeflow-katib-install", pinned=versions.KATIB.ref)
        for component in katib["components"].values():
            if "service" in component:
                found.services[(katib["namespace"], component["service"])] = {
                    component["port"]: None
                }
        found.selectors["katib.kubeflow.org/experiment"] = ("Experiment", "name")
        experiment = facts("kubeflow-katib-experiments", pinned=versions.KATIB.ref)
        found.containers.add(experiment["stdout_collector"]["sidecar_container"])


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, continuation lines joined."""
    blocks = re.findall(r"^\s*```(\w*)\n(.*?)^\s*```", text, flags=re.S | re.M)
    return [(lang, body.replace("\\\n", " ")) for lang, body in blocks]


def _check_kubectl(words: list[str], rendered: Rendered) -> list[str]:
    line = " ".join(words)
    namespace = words[words.index("-n") + 1] if "-n" in words else ""
    if namespace and namespace not in rendered.namespaces:
        return [f"{line}: no namespace {namespace!r}"]
    problems = []
    for position, word in enumerate(words):
        nxt = words[position + 1] if position + 1 < len(words) else ""
        if "<" in word or "<" in nxt:
            continue  # a placeholder the reader fills in
        problem = _check_word(word, nxt, position, _Command(words, namespace, rendered))
        if problem:
            problems.append(f"{line}: {problem}")
    return problems


@dataclass(frozen=True)
class _Command:
    """One kubectl command: its words, its namespace, and what the stack renders."""

    words: list[str]
    namespace: str
    rendered: Rendered


def _check_word(word: str, nxt: str, position: int, command: _Command) -> str | None:
    """What is wrong with the name `word` introduces (None when nothing)."""
    if word in ("-l", "-c", "can-i"):
        return _check_flag(word, nxt, position, command)
    namespace, rendered = command.namespace, command.rendered
    if word.startswith("svc/"):
        ports = rendered.services.get((namespace, word[4:]))
        if ports is None:
            return f"no Service {word[4:]!r} in {namespace}"
        forwarded = "port-forward" in command.words and ":" in nxt
        missing = forwarded and int(nxt.split(":")[1]) not in ports
        return f"{word} has no port {nxt}" if missing else None
    names_object = bool(nxt) and not nxt.startswith("-")
    if word in KINDS and names_object:
        known = rendered.objects.get((namespace, KINDS[word]), set())
        return None if nxt in known else f"no {KINDS[word]} {nxt!r} in {namespace}"
    follows_logs = word == "-f" and command.words[position - 1] == "logs"
    if (word in ("logs", "pod") and names_object) or follows_logs:
        return None if (namespace, nxt) in rendered.pods else f"no pod {nxt!r} in {namespace}"
    return None


def _check_flag(word: str, nxt: str, position: int, command: _Command) -> str | None:
    rendered = command.rendered
    if word == "-l":
        key, _, value = nxt.partition("=")
        if key not in rendered.selectors:
            return f"no object is selected by {key!r}"
        kind, _ = rendered.selectors[key]
        known = rendered.objects.get((command.namespace, kind), set())
        return None if value in known else f"{key}={value} names no {kind} in {command.namespace}"
    if word == "-c":
        return None if nxt in rendered.containers else f"no container {nxt!r}"
    verb, resource = nxt, command.words[position + 2]
    allowed = any(
        resource in rule["resources"] and verb in rule["verbs"] for rule in rendered.engineer_rules
    )
    return None if allowed else f"the ml-engineer Role does not {verb} {resource}"


def _check_address(host: str, port: int | None, where: str, rendered: Rendered) -> list[str]:
    service, _, rest = host.partition(".")
    namespace = rest.split(".")[0]
    ports = rendered.services.get((namespace, service))
    if ports is None:
        return [f"{where}: no Service {service!r} in namespace {namespace!r}"]
    if (port or 80) not in ports:
        return [f"{where}: Service {namespace}/{service} has no port {port or 80}"]
    return []


def _check_urls(body: str, rendered: Rendered) -> list[str]:
    """In-cluster addresses, and Services reached through the API server's proxy."""
    problems = []
    for url in re.finditer(r"https?://([a-z0-9.-]+)(?::(\d+))?(/[^\s'\"]*)?", body):
        host, port, path = url[1], url[2], url[3] or ""
        if host not in LOCAL_HOSTS:
            problems += _check_address(host, int(port) if port else None, url[0], rendered)
            continue
        proxied = re.match(r"/api/v1/namespaces/([^/]+)/services/([^/:]+):([^/]+)/", path)
        if proxied:
            namespace, service, port_name = proxied.groups()
            ports = rendered.services.get((namespace, service))
            if ports is None or port_name not in ports.values():
                problems.append(f"{url[0]}: no port {port_name!r} of {namespace}/{service}")
    return problems


def _check_commands(body: str, rendered: Rendered) -> list[str]:
    problems = []
    for line in body.splitlines():
        command = line.split(" # ")[0].strip()
        if not command or command.startswith("#"):
            continue
        words = shlex.split(command)
        if words[0] == "kubectl":
            problems += _check_kubectl(words, rendered)
            problems += _check_status_fields(words)
        if words[:3] == ["aws", "eks", "update-kubeconfig"]:
            if words[words.index("--region") + 1] != rendered.region:
                problems.append(f"{command}: the stack's region is {rendered.region}")
            if words[words.index("--name") + 1] != rendered.cluster:
                problems.append(f"{command}: the stack's cluster is {rendered.cluster}")
    return problems


def _check_status_fields(words: list[str]) -> list[str]:
    """`-o jsonpath={.status.<field>}` of an Experiment names a field of Katib's status."""
    if "experiment" not in words:
        return []
    known = {f.alias or name for name, f in V1beta1ExperimentStatus.model_fields.items()}
    return [
        f"{' '.join(words)}: an Experiment's status has no {field!r}"
        for word in words
        for field in re.findall(r"\{\.status\.(\w+)", word)
        if field not in known
    ]


def guide_problems(text: str, rendered: Rendered) -> list[str]:
    """Every name in the guide's blocks that `rendered` lacks, one line each."""
    problems: list[str] = []
    service_address = r"\"([a-z0-9-]+\.[a-z0-9-]+(?:\.svc[.a-z]*)?):(\d+)\""
    for lang, body in code_blocks(text):
        problems += _check_urls(body, rendered)
        if lang == "python":
            for address in re.finditer(service_address, body):
                problems += _check_address(address[1], int(address[2]), address[0], rendered)
        if lang == "sh":
            problems += _check_commands(body, rendered)
    for title in re.findall(r"\*\*(ML platform / [^*]+)\*\*", text):
        if title not in rendered.dashboards:
            problems.append(f"dashboard {title!r}: no such dashboard")
    return problems


def test_the_guide_names_only_what_dev_renders() -> None:
    text = GUIDE.read_text()
    rendered = _rendered()
    assert guide_problems(text, rendered) == []
    # It covers the path it promises: each of these is checked above, so it must be there.
    for needed in (
        "port-forward svc/explore",
        "get tfjob mnist",
        "logs -f mnist-worker-0",
        "get experiment mnist-tuning",
        "http://inference-mnist.serving/v1/models/mnist:digit",
        '"tfserving-mnist.serving:8500"',
        "http://ml-pipeline.kubeflow:8888",
        "describe resourcequota team",
        "**ML platform / GPUs**",
    ):
        assert needed in text, needed


def test_the_check_catches_names_dev_does_not_render() -> None:
    """A control: wrong namespaces, Services, ports, objects, pods and dashboards are caught."""
    rendered = _rendered()
    wrong = "\n".join(
        [
            "```sh",
            "kubectl -n reserch get tfjob mnist",
            "kubectl -n research port-forward svc/notebook 8888:80",
            "kubectl -n research port-forward svc/explore 8888:8888",
            "kubectl -n research get experiment mnist-tune",
            "kubectl -n research logs -f mnist-worker-5",
            "kubectl -n research get trials -l katib.kubeflow.org/experiment=other",
            "kubectl -n research auth can-i create secrets",
            "curl -s http://inference-mnist.serving:8080/v1/models/mnist",
            "curl -s http://tfserving.serving:8501/v1/models/mnist",
            "aws eks update-kubeconfig --region eu-west-1 --name ml-dev",
            "kubectl -n research get experiment mnist-tuning -o jsonpath='{.status.bestTrial}'",
            "```",
            "```python",
            'grpc.insecure_channel("tfserving-mnist.serving:9000")',
            "```",
            "the dashboard **ML platform / nothing**",
        ]
    )
    problems = guide_problems(wrong, rendered)
    assert len(problems) == 13, "\n".join(problems)


def test_the_guides_declarations_are_devs() -> None:
    """The `trainingJobs` and `experiments` entries the guide shows as `dev`'s are those of
    `research` in Pulumi.dev.yaml, key for key, so a reader copying one gets what `dev` runs."""
    [research] = [t for t in stack_config(STACK)["ml-platform:teams"] if t["name"] == "research"]
    shown = 0
    for lang, body in code_blocks(GUIDE.read_text()):
        if lang != "yaml":
            continue
        block = yaml.safe_load(textwrap.dedent(body))
        for key in ("trainingJobs", "experiments"):
            for entry in block.get(key, []):
                [declared] = [d for d in research.get(key, []) if d["name"] == entry["name"]]
                assert entry == declared, f"{key} {entry['name']}"
                shown += 1
    assert shown == 2

"""Katib: the pinned install, its changes, and the teams' Experiments as Katib would take them.

The Experiments are checked against the Katib API's own models (`kubeflow-katib-api`, the
models package of the pinned release: the `kubeflow-katib` SDK itself pins protobuf<5, which
cannot be installed beside kfp-kubernetes' protobuf>=6; the release's Experiment CRD has no schema
to check against, the whole object preserves unknown fields), against the rules of Katib's
webhook (tests/upstream/kubeflow-katib-experiments.yaml), and by running one trial's command, as
rendered, on real MNIST and parsing its output as the StdOut collector does.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pulumi
import pytest
import yaml
from kubeflow_katib_api.models import V1beta1Experiment

from harness.program import (
    ProgramError,
    RegisteredResource,
    run_program,
    stack_config,
    stack_settings,
)
from harness.render import kubernetes_objects
from infra import katib, names, versions
from infra.image_mirror import docker_hub_image
from infra.scheduling import SYSTEM_POOL, placement
from infra.settings import SettingsError
from infra.settings.experiments import ExperimentSettings, TrainerMetric
from infra.team_quota import experiment_requests, workload_requests
from tests.conftest import STACKS, stack_run
from tests.dependencies import waits_for
from tests.directory_children import as_registered
from tests.upstream_facts import facts
from training import train as trainer
from training.sample_data import mnist_npz
from workloads import experiments

ROOT = Path(__file__).resolve().parents[1]
DIRECTORY = "kubernetes:kustomize/v2:Directory"
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}


def _experiment_facts() -> Any:
    return facts("kubeflow-katib-experiments", pinned=versions.KATIB.ref)


def _install_facts() -> Any:
    return facts("kubeflow-katib-install", pinned=versions.KATIB.ref)


def _experiments(stack: str) -> list[dict[str, Any]]:
    return [o for o in kubernetes_objects(stack_run(stack)) if o["kind"] == "Experiment"]


def _katib_directory(stack: str) -> RegisteredResource:
    [directory] = [
        d
        for d in stack_run(stack).of_type(DIRECTORY)
        if str(d.inputs["directory"]).startswith(versions.KATIB.repository + "//")
    ]
    return directory


def _dev_experiment() -> dict[str, Any]:
    [experiment] = _experiments("dev")
    return experiment


# --- the install -------------------------------------------------------------------------------


def test_dev_installs_the_pinned_katib() -> None:
    directory = _katib_directory("dev")
    assert directory.inputs["directory"] == versions.KATIB.url
    assert versions.KATIB.url == (
        "https://github.com/kubeflow/katib//manifests/v1beta1/installs/katib-standalone?ref=v0.19.0"
    )


@pytest.mark.parametrize("stack", STACKS)
def test_katib_is_installed_only_where_switched_on(stack: str) -> None:

    enabled = stack_settings(stack).kubeflow.katib.enabled
    found = [
        d
        for d in stack_run(stack).of_type(DIRECTORY)
        if str(d.inputs["directory"]).startswith(versions.KATIB.repository + "//")
    ]
    assert len(found) == (1 if enabled else 0)


def test_the_config_puts_the_sidecar_and_suggestions_under_restricted() -> None:
    install = _install_facts()
    config = install["config"]
    upstream = install["config_text"]
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": config["name"], "namespace": install["namespace"]},
        "data": {config["key"]: upstream},
    }
    registered = as_registered(_katib_directory("dev"), obj)
    result = yaml.safe_load(registered["data"][config["key"]])
    assert result["init"]["controller"]["injectSecurityContext"] is True
    # Nothing upstream set is lost.
    original = yaml.safe_load(upstream)
    assert result["init"]["controller"]["trialResources"] == install["trial_resources"]
    assert result["runtime"]["metricsCollectors"] == original["runtime"]["metricsCollectors"]
    suggestions = result["runtime"]["suggestions"]
    assert [s["algorithmName"] for s in suggestions] == install["suggestion_algorithms"]
    for suggestion in suggestions:
        context = suggestion["securityContext"]
        # What Pod Security's `restricted` checks of a container.
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] > 0
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_katib_runs_on_the_system_nodes_and_restarts_on_config_changes() -> None:
    install = _install_facts()

    system = placement(stack_settings("dev"), SYSTEM_POOL).pod_fields()
    assert system
    for component, spec in install["components"].items():
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": spec["deployment"],
                "namespace": install["namespace"],
                "labels": {install["component_label"]: component},
            },
            "spec": {"template": {"spec": {"containers": [{"name": spec["deployment"]}]}}},
        }
        registered = as_registered(_katib_directory("dev"), deployment)
        pod = registered["spec"]["template"]["spec"]
        for key, value in system.items():
            assert pod[key] == value, (component, key)
        annotations = registered["spec"]["template"].get("metadata", {}).get("annotations", {})
        assert (katib.CONFIG_DIGEST_ANNOTATION in annotations) == (component == "controller")


def test_team_namespaces_carry_the_injection_label_and_kubeflow_does_not() -> None:
    """Katib's own pods, and every other pod in `kubeflow`, never wait on Katib's pod mutator."""
    install = _install_facts()
    label = install["injection_label"]
    assert label == katib.INJECTION_LABEL
    namespaces = {
        o["metadata"]["name"]: o["metadata"]["labels"]
        for o in kubernetes_objects(stack_run("dev"))
        if o["kind"] == "Namespace"
    }
    assert label.items() <= namespaces["research"].items()
    for name in (names.KUBEFLOW, names.SERVING):
        assert not label.keys() & namespaces[name].keys(), name
    # The bundle's own Namespace object, which the installer applies over ours, loses it too.
    upstream = install["namespace_object"]
    assert label.items() <= upstream["metadata"]["labels"].items()
    registered = as_registered(_katib_directory("dev"), upstream)
    assert registered["metadata"]["name"] == names.KUBEFLOW
    assert not label.keys() & (registered["metadata"].get("labels") or {}).keys()


def test_the_pod_mutator_sees_only_trial_pods() -> None:
    upstream = _install_facts()["mutating_webhooks"]
    registered = as_registered(_katib_directory("dev"), upstream)
    hooks = {w["name"]: w for w in registered["webhooks"]}
    original = {w["name"]: w for w in upstream["webhooks"]}
    mutator = hooks[katib.POD_MUTATOR]
    assert "objectSelector" not in original[katib.POD_MUTATOR]
    assert mutator["objectSelector"] == {"matchLabels": katib.TRIAL_POD_LABEL}
    # Everything else stays upstream's.
    assert {k: v for k, v in mutator.items() if k != "objectSelector"} == original[
        katib.POD_MUTATOR
    ]
    assert {n: w for n, w in hooks.items() if n != katib.POD_MUTATOR} == {
        n: w for n, w in original.items() if n != katib.POD_MUTATOR
    }


def _trial_pod_templates(experiment: dict[str, Any]) -> list[dict[str, Any]]:
    trial = experiment["spec"]["trialTemplate"]["trialSpec"]
    if trial["kind"] == "TFJob":
        return [r["template"] for r in trial["spec"]["tfReplicaSpecs"].values()]
    return [trial["spec"]["template"]]


@pytest.mark.parametrize("kind", ["TFJob", "Job"])
def test_every_trial_pod_carries_the_label_the_pod_mutator_selects(kind: str) -> None:
    config = stack_config("dev")
    [declared] = config["ml-platform:teams"][0]["experiments"]
    declared["trial"]["kind"] = kind
    [experiment] = [
        o for o in kubernetes_objects(run_program("dev", config)) if o["kind"] == "Experiment"
    ]
    templates = _trial_pod_templates(experiment)
    assert templates
    for template in templates:
        assert katib.TRIAL_POD_LABEL.items() <= template["metadata"]["labels"].items()


def _katib_transform(directory: RegisteredResource) -> Any:
    [transform] = [t for t in directory.transforms if t.__qualname__.startswith("configure_katib")]
    return transform


def test_mysql_gets_a_generated_password_kept_secret() -> None:
    install = _install_facts()
    upstream = install["mysql_secret"]
    [key] = upstream["data"]
    assert base64.b64decode(upstream["data"][key]) == b"test"
    run = stack_run("dev")
    [password] = [
        r for r in run.of_type("random:index/randomPassword:RandomPassword") if "katib" in r.name
    ]
    # Letters and digits only: the probes' shell line and the DB manager's DSN take it as is.
    assert password.inputs["special"] is False
    assert password.inputs["length"] >= 32
    directory = _katib_directory("dev")
    registered = as_registered(directory, upstream)
    value = base64.b64decode(registered["data"][key]).decode()
    assert value != "test"
    assert value == password.outputs["result"]
    # What the transform hands the engine is a secret: masked in state and in previews.
    result = _katib_transform(directory)(
        pulumi.ResourceTransformArgs(
            custom=True,
            type_="kubernetes:core/v1:Secret",
            name=f"{directory.name}:kubeflow/{upstream['metadata']['name']}",
            props=copy.deepcopy(upstream),
            opts=pulumi.ResourceOptions(),
        )
    )
    output = result.props["data"][key]
    assert isinstance(output, pulumi.Output)
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(output.is_secret()) is True
    finally:
        loop.close()


def test_mysql_and_the_db_manager_restart_together_on_a_new_password() -> None:
    install = _install_facts()
    readers = install["mysql_password_readers"]
    assert set(readers) == set(katib.MYSQL_PASSWORD_READERS)
    digests = set()
    for component, spec in install["components"].items():
        name = spec["deployment"]
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": install["namespace"],
                "labels": {install["component_label"]: component},
            },
            "spec": {"template": {"spec": {"containers": [{"name": name}]}}},
        }
        registered = as_registered(_katib_directory("dev"), deployment)
        annotations = registered["spec"]["template"].get("metadata", {}).get("annotations", {})
        digest = annotations.get(katib.MYSQL_PASSWORD_DIGEST_ANNOTATION)
        assert (digest is not None) == (name in readers), name
        if digest is not None:
            digests.add(digest)
    [password] = [
        r
        for r in stack_run("dev").of_type("random:index/randomPassword:RandomPassword")
        if "katib" in r.name
    ]
    assert digests == {hashlib.sha256(password.outputs["result"].encode()).hexdigest()}


def test_the_readme_names_katibs_docker_hub_image_among_those_not_mirrored() -> None:
    """The stack's Docker Hub mirror does not reach the bundle's MySQL: the README says so."""
    image = _install_facts()["mysql_image"]
    assert docker_hub_image(image) is not None
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"Katib's MySQL, `{image}` from Docker Hub) keep their registries" in readme


# --- the Experiments ---------------------------------------------------------------------------


def test_dev_declares_one_experiment_for_research_after_the_install() -> None:
    experiment = _dev_experiment()
    assert experiment["metadata"]["namespace"] == "research"
    spec = experiment["spec"]
    assert spec["algorithm"]["algorithmName"] == "random"
    assert (spec["parallelTrialCount"], spec["maxTrialCount"]) == (2, 8)
    assert {p["name"] for p in spec["parameters"]} == {"learning_rate", "hidden_units"}
    run = stack_run("dev")
    [resource] = run.of_type("kubernetes:kubeflow.org/v1beta1:Experiment")
    assert _katib_directory("dev").urn in waits_for(run, resource)
    # Its trials' ServiceAccount exists first (Pod Identity injects credentials at pod creation).
    account = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["tfReplicaSpecs"]["Worker"]
    account_name = account["template"]["spec"]["serviceAccountName"]
    [sa] = [
        r
        for r in run.of_type("kubernetes:core/v1:ServiceAccount")
        if r.inputs["metadata"]["name"] == account_name
    ]
    assert sa.urn in waits_for(run, resource)


def test_experiments_survive_the_katib_models_unchanged() -> None:
    experiment = _dev_experiment()
    model = V1beta1Experiment.from_dict(experiment)
    assert model is not None
    assert model.to_dict() == experiment


def test_the_models_catch_an_unknown_or_mistyped_field() -> None:
    """A control: the round trip drops what the API does not know, and refuses a wrong type."""
    experiment = json.loads(json.dumps(_dev_experiment()))
    experiment["spec"]["parallelTrials"] = 2
    model = V1beta1Experiment.from_dict(experiment)
    assert model is not None
    assert model.to_dict() != experiment
    mistyped = json.loads(json.dumps(_dev_experiment()))
    mistyped["spec"]["maxTrialCount"] = "8"
    with pytest.raises(ValueError, match=r"maxTrialCount|max_trial_count"):
        V1beta1Experiment.from_dict(mistyped)


def _placeholders(text: str) -> set[str]:
    pattern = _experiment_facts()["trial_parameter_regex"]
    return {match[len("${trialParameters.") : -1] for match in re.findall(pattern, text)}


def test_every_trial_parameter_is_declared_and_used() -> None:
    known = _experiment_facts()
    for experiment in _experiments("dev"):
        spec = experiment["spec"]
        template = spec["trialTemplate"]
        used = _placeholders(json.dumps(template["trialSpec"]))
        declared = {p["name"] for p in template["trialParameters"]}
        assert used == declared
        searched = {p["name"] for p in spec["parameters"]}
        references = {p["reference"] for p in template["trialParameters"]}
        meta = {
            r
            for r in references
            if (m := re.fullmatch(known["trial_meta_regex"], r))
            and m[1] in known["trial_meta_keys"]
        }
        # Every searched parameter reaches the trial; nothing else but trial metadata does.
        assert references - meta == searched
        # Katib substitutes by name: no placeholder may be a prefix of another.
        assert all(not (a != b and b.startswith(a)) for a in declared for b in declared)


def test_the_template_leaves_naming_to_katib_and_sets_its_conditions() -> None:
    known = _experiment_facts()
    for experiment in _experiments("dev"):
        template = experiment["spec"]["trialTemplate"]
        kind = template["trialSpec"]["kind"]
        assert "metadata" not in template["trialSpec"]
        conditions = known["conditions"][kind]
        assert template["successCondition"] == conditions["success"]
        assert template["failureCondition"] == conditions["failure"]
        if kind == "TFJob":
            assert template["primaryPodLabels"] == known["kubeflow_primary_pod_labels"]
        name = experiment["metadata"]["name"]
        pattern = known["experiment_name"]
        assert re.match(pattern["pattern"], name)
        assert len(name) <= pattern["max_length"]


def katib_defaulted(experiment: dict[str, Any]) -> dict[str, Any]:
    """The Experiment as Katib's defaulting webhook leaves it (experiment_defaults.go L27-200,
    from tests/upstream/kubeflow-katib-experiments.yaml)."""
    known = _experiment_facts()
    result = copy.deepcopy(experiment)
    spec = result["spec"]
    spec.setdefault("parallelTrialCount", known["default_parallel_trial_count"])
    spec.setdefault("resumePolicy", known["default_resume_policy"])
    objective = spec["objective"]
    strategies = objective.setdefault("metricStrategies", [])
    extract = known["metric_strategy_by_type"][objective["type"]]
    named = {s["name"] for s in strategies}
    if objective["objectiveMetricName"] not in named:
        strategies.append({"name": objective["objectiveMetricName"], "value": extract})
    for metric in objective.get("additionalMetricNames") or []:
        if metric not in named:
            strategies.append({"name": metric, "value": extract})
    template = spec["trialTemplate"]
    kind = template["trialSpec"]["kind"]
    conditions = known["conditions"][kind]
    template.setdefault("successCondition", conditions["success"])
    template.setdefault("failureCondition", conditions["failure"])
    if kind != "Job" and not template.get("primaryPodLabels"):
        template["primaryPodLabels"] = dict(known["kubeflow_primary_pod_labels"])
    collector = spec.setdefault("metricsCollectorSpec", {}).setdefault("collector", {})
    collector.setdefault("kind", known["stdout_collector"]["kind"])
    for parameter in spec["parameters"]:
        space = parameter["feasibleSpace"]
        if not space.get("distribution"):
            space["distribution"] = known["default_distribution"]
    return result


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"objective": {"metric": "test_loss", "type": "minimize"}},
        {
            "parameters": [
                {"name": "hidden_units", "type": "discrete", "list": ["64", "128"]},
                {"name": "dropout", "type": "double", "min": "0", "max": "0.5"},
            ]
        },
    ],
)
def test_katib_defaulting_changes_nothing_pulumi_declares(change: dict[str, Any]) -> None:
    """What the API server stores is what Pulumi keeps: no diff on the next refresh."""
    config = stack_config("dev")
    [declared] = config["ml-platform:teams"][0]["experiments"]
    declared.update(change)
    [experiment] = [
        o for o in kubernetes_objects(run_program("dev", config)) if o["kind"] == "Experiment"
    ]
    assert katib_defaulted(experiment) == experiment


def test_the_objective_is_a_metric_the_trainer_reports() -> None:
    assert set(get_args(TrainerMetric)) == set(trainer.REPORTED_METRICS)
    assert set(experiments.TRAINER_METRICS) == set(trainer.REPORTED_METRICS)
    collector = _experiment_facts()["stdout_collector"]
    for experiment in _experiments("dev"):
        spec = experiment["spec"]
        assert spec["metricsCollectorSpec"]["collector"]["kind"] == collector["kind"]
        objective = spec["objective"]
        assert objective["objectiveMetricName"] in trainer.REPORTED_METRICS
        assert set(objective["additionalMetricNames"]) <= set(trainer.REPORTED_METRICS)


# --- one trial, run as Katib runs it -----------------------------------------------------------


def _sample(parameter: dict[str, Any], rng: random.Random) -> str:
    space = parameter["feasibleSpace"]
    if "list" in space:
        return str(rng.choice(space["list"]))
    low, high = float(space["min"]), float(space["max"])
    if parameter["parameterType"] == "int":
        return str(rng.randint(int(low), int(high)))
    return repr(rng.uniform(low, high))


def _primary_command(experiment: dict[str, Any]) -> list[str]:
    template = experiment["spec"]["trialTemplate"]
    trial = template["trialSpec"]
    if trial["kind"] == "TFJob":
        pods = [r["template"] for r in trial["spec"]["tfReplicaSpecs"].values()]
    else:
        pods = [trial["spec"]["template"]]
    [command] = [
        c["command"]
        for pod in pods
        for c in pod["spec"]["containers"]
        if c["name"] == template["primaryContainerName"]
    ]
    return list(command)


def collected(log: str, metrics: list[str], pattern: str) -> dict[str, list[str]]:
    """The StdOut collector's reading of a trial's output (file-metricscollector.go L72-126)."""
    found: dict[str, list[str]] = {m: [] for m in metrics}
    for line in log.split("\n"):
        if not any(m in line for m in metrics):
            continue
        for match in re.finditer(pattern, line):
            name, value = match[1].strip(), match[2].strip()
            if name in found:
                found[name].append(value)
    return found


def test_collector_reading_follows_katib() -> None:
    """A control for `collected`: the lines Katib's own tests parse, the way they parse them."""
    pattern = _experiment_facts()["stdout_collector"]["default_filter"]
    log = "epoch 1: loss 0.3\naccuracy=.98 loss=0.3\nval_accuracy=0.5\nScore=-7.53e-05\n"
    found = collected(log, ["accuracy", "loss", "Score"], pattern)
    assert found == {"accuracy": [".98"], "loss": ["0.3"], "Score": ["-7.53e-05"]}


@pytest.mark.timeout(900)  # TensorFlow's import and an epoch on the CPU of a busy machine
def test_a_rendered_trial_reports_its_objective(tmp_path: Path) -> None:
    experiment = _dev_experiment()
    spec = experiment["spec"]
    rng = random.Random(20261202)
    values = {p["name"]: _sample(p, rng) for p in spec["parameters"]}
    substitutions = {
        t["name"]: values.get(t["reference"], f"{experiment['metadata']['name']}-x7k2p9qd")
        for t in spec["trialTemplate"]["trialParameters"]
    }
    command = _primary_command(experiment)
    text = json.dumps(command)
    for name, value in substitutions.items():
        text = text.replace("${trialParameters." + name + "}", value)
    command = json.loads(text)
    assert not _placeholders(text)
    # Paths pointed at test data, one epoch, the test's interpreter for `python`.
    data_dir, models_dir = "/data/", "/models/"
    pointed = []
    for arg in command:
        flag, sep, value = arg.partition("=")
        if value.startswith(data_dir):
            value = str(mnist_npz())
        elif value.startswith(models_dir):
            value = str(tmp_path / "models" / value.removeprefix(models_dir))
        elif flag == "--epochs":
            value = "1"
        pointed.append(f"{flag}{sep}{value}" if sep else arg)
    assert pointed[0] == "python"
    pointed[0] = sys.executable
    # The StdOut collector's wrapper (pod/utils.go L155-199), its `$$` unescaped as Kubernetes
    # expands a container's arguments.
    collector = _experiment_facts()["stdout_collector"]
    metrics_file = tmp_path / "katib" / Path(collector["metrics_file"]).name
    metrics_file.parent.mkdir()
    redirect = collector["redirect"].format(file=metrics_file)
    done = f"echo completed > {metrics_file.parent}/$$.pid"
    wrapped = [*collector["wrapper"], " ".join([*pointed, redirect, "&&", done])]
    result = subprocess.run(
        wrapped,
        cwd=ROOT,
        env={**os.environ, **QUIET_TF},
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    log = metrics_file.read_text()
    assert result.returncode == 0, log[-3000:]
    assert [p.read_text().strip() for p in metrics_file.parent.glob("*.pid")] == ["completed"]
    objective = spec["objective"]["objectiveMetricName"]
    metrics = [objective, *spec["objective"]["additionalMetricNames"]]
    found = collected(log, metrics, collector["default_filter"])
    assert len(found[objective]) == 1, log[-3000:]
    reported = float(found[objective][0])
    assert 0.85 <= reported <= 1.0  # one epoch of the MLP on MNIST
    assert all(len(v) == 1 for v in found.values()), found
    # The sampled values reached the trainer: its run record holds them as its choices.
    [record] = (tmp_path / "models" / ".checkpoints").rglob("run.json")
    choices = json.loads(record.read_text())["identity"]["choices"]
    assert choices["epochs"] == 1
    for name, sampled in values.items():
        assert choices[name] == type(choices[name])(sampled), name


# --- quota and schedulability count the trials --------------------------------------------------


def _fails(config: dict[str, Any]) -> str:
    with pytest.raises(ProgramError) as caught:
        run_program("dev", config)
    assert isinstance(caught.value.cause, SettingsError), caught.value.cause
    assert caught.value.resources == []
    return str(caught.value.cause)


def _dev_with(change: dict[str, Any], trial: dict[str, Any] | None = None) -> dict[str, Any]:
    config = stack_config("dev")
    [declared] = config["ml-platform:teams"][0]["experiments"]
    declared.update(change)
    declared["trial"].update(trial or {})
    # The team's training job alone must not be what breaks the quota.
    config["ml-platform:teams"][0]["trainingJobs"] = []
    return config


def test_parallel_trials_over_the_gpu_quota_stop_the_program() -> None:
    # research: quota.gpus 4; 3 trials at once x 2 workers x 1 GPU = 6.
    message = _fails(_dev_with({"parallelTrialCount": 3}, {"workers": 2}))
    assert "ml-platform:teams[0].experiments[0]: needs 6 nvidia.com/gpu in total" in message
    assert "parallelTrialCount 3 x 2 per trial" in message
    assert "(quota.gpus: 4)" in message


def test_within_quota_the_same_experiment_is_accepted() -> None:
    """The control for the test above: 2 trials at once x 2 GPUs fit a quota of 4."""
    run = run_program("dev", _dev_with({"parallelTrialCount": 2}, {"workers": 2}))
    assert run.of_type("kubernetes:kubeflow.org/v1beta1:Experiment")


def test_a_trial_no_pool_can_run_stops_the_program() -> None:
    # g5.xlarge and g6.xlarge have one GPU each.
    message = _fails(_dev_with({}, {"gpusPerWorker": 2}))
    assert "declared workloads no node pool can run" in message
    assert "ml-platform:teams[0].experiments[0]:" in message
    assert "Experiment research/mnist-tuning trial TFJob Worker" in message


def test_engineers_run_experiments_and_everyone_in_the_team_reads_trials() -> None:
    roles = {
        o["metadata"]["name"]: o["rules"]
        for o in kubernetes_objects(stack_run("dev"))
        if o["kind"] == "Role" and o["metadata"]["namespace"] == "research"
    }

    def verbs(role: str, resource: str) -> set[str]:
        return {
            verb
            for rule in roles[role]
            if "kubeflow.org" in rule["apiGroups"] and resource in rule["resources"]
            for verb in rule["verbs"]
        }

    assert {"create", "delete"} <= verbs("ml-engineer", "experiments")
    for role in ("ml-engineer", "viewer"):
        for resource in ("experiments", "trials", "suggestions"):
            assert {"get", "list", "watch"} <= verbs(role, resource), (role, resource)
    assert not {"create", "update", "patch", "delete"} & verbs("viewer", "experiments")
    assert not {"create", "update", "patch", "delete"} & verbs("ml-engineer", "trials")


# --- the training operator's trial kinds ----------------------------------------------------------


def _without_training_operator() -> dict[str, Any]:
    config = stack_config("dev")
    config["ml-platform:kubeflow"]["trainingOperator"] = {"enabled": False}
    for team in config["ml-platform:teams"]:
        team["trainingJobs"] = []
        for declared in team.get("experiments") or []:
            declared["trial"]["kind"] = "Job"
    return config


def test_katib_is_installed_after_the_training_operator() -> None:
    """Katib's controller watches a trial kind only if its CRD exists when it starts."""
    run = stack_run("dev")
    [operator] = [
        d for d in run.of_type(DIRECTORY) if d.inputs["directory"] == versions.TRAINING_OPERATOR.url
    ]
    assert operator.urn in waits_for(run, _katib_directory("dev"))


def _controller_digest(directory: RegisteredResource) -> str:
    install = _install_facts()
    controller = install["components"]["controller"]["deployment"]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": controller,
            "namespace": install["namespace"],
            "labels": {install["component_label"]: "controller"},
        },
        "spec": {"template": {"spec": {"containers": [{"name": controller}]}}},
    }
    registered = as_registered(directory, deployment)
    digest: str = registered["spec"]["template"]["metadata"]["annotations"][
        katib.CONFIG_DIGEST_ANNOTATION
    ]
    return digest


def test_switching_the_training_operator_on_restarts_the_katib_controller() -> None:
    run = run_program("dev", _without_training_operator())
    assert not [
        d for d in run.of_type(DIRECTORY) if d.inputs["directory"] == versions.TRAINING_OPERATOR.url
    ]
    [katib_directory] = [
        d
        for d in run.of_type(DIRECTORY)
        if str(d.inputs["directory"]).startswith(versions.KATIB.repository + "//")
    ]
    assert _controller_digest(katib_directory) != _controller_digest(_katib_directory("dev"))


def test_search_spaces_the_services_draw_inside_are_accepted() -> None:
    """Controls for the refusals in test_bad_config: the nearby valid spaces pass."""
    base = {"name": "x", "objective": {"metric": "test_loss", "type": "minimize"}}
    for algorithm, parameter in (
        ("random", {"name": "batch_size", "type": "int", "min": "32", "max": "256", "step": "32"}),
        ("tpe", {"name": "dropout", "type": "double", "min": "0.1", "max": "0.5", "step": "0.1"}),
        ("random", {"name": "dropout", "type": "double", "min": "0", "max": "0.5"}),
        (
            "bayesianoptimization",
            {"name": "dropout", "type": "double", "min": "0.01", "max": "0.5"},
        ),
        ("bayesianoptimization", {"name": "epochs", "type": "int", "min": "1", "max": "5"}),
        (
            "random",
            {
                "name": "learning_rate",
                "type": "double",
                "min": "0.0001",
                "max": "0.01",
                "distribution": "logUniform",
            },
        ),
    ):
        ExperimentSettings.model_validate(
            {**base, "algorithm": {"name": algorithm}, "parameters": [parameter]}
        )


def test_an_experiment_without_parallel_trial_count_is_counted_as_katib_runs_it() -> None:
    """Katib's webhook gives it 3 trials at once (tests/upstream/kubeflow-katib-experiments.yaml),
    so the quota check counts 3."""
    default = _experiment_facts()["default_parallel_trial_count"]
    experiment = _dev_experiment()
    trial = workload_requests(experiment["spec"]["trialTemplate"]["trialSpec"])
    unset = copy.deepcopy(experiment)
    del unset["spec"]["parallelTrialCount"]
    explicit = copy.deepcopy(experiment)
    explicit["spec"]["parallelTrialCount"] = default
    assert experiment_requests(unset) == experiment_requests(explicit)
    assert experiment_requests(unset)["cpu"] >= default * trial["cpu"]

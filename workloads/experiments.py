"""Katib Experiments, built as plain API objects from a team's `experiments`.

Each trial runs `training.train` as the team's TFJobs run it (same image, placement, volumes,
priority, security and GPU treatment: the trial's TFJob comes from `manifests.tfjob`), with the
trial's values passed as flags and its own export and checkpoint directories under
`/models/.experiments/<team>/<experiment>/<trial>`.  Trial pods run under the experiment's own
ServiceAccount, `experiment-<name>`, which carries its S3 access (workload identity).

Katib facts (kubeflow/katib@v0.19.0; tests/upstream/kubeflow-katib-experiments.yaml holds the ones
the tests check):

- a trial template names each value as `${trialParameters.<name>}`; every declared trial parameter
  must appear in it and nothing else may (pkg/webhook/v1beta1/experiment/validator/validator.go
  L355-410), and a trial parameter may reference trial metadata, `${trialSpec.Name}` among it
  (pkg/controller.v1beta1/consts/const.go L133-151);
- the template omits the job's name and namespace (validator.go L420-424): each trial's job is
  named after the trial, in the experiment's namespace;
- the StdOut collector wraps the primary container's command in `sh -c "<command>
  1>/var/log/katib/metrics.log 2>&1 && echo completed > ..."` and a sidecar parses that file
  (pkg/webhook/v1beta1/pod/utils.go L155-199); it runs on the pods `primaryPodLabels` select: the
  TFJob's master pod (its Chief, else worker 0: the pod the trainer reports from);
- `retain` is left unset: when a trial ends the trial controller deletes its job and pods
  (pkg/controller.v1beta1/trial/trial_controller.go L311-319), which hold nothing then; the
  trial's metrics stay in its status and Katib's database, its model under `/models`;
- what Katib's defaulting webhook would add is set here, as it derives it, so the object Pulumi
  keeps is the object the API server stores (pkg/apis/controller/experiments/v1beta1/
  experiment_defaults.go L27-200): success and failure conditions of a Kubeflow job and a batch
  Job (constants.go L26-54); `resumePolicy: Never` (L43-47, constants.go L24,
  experiment_types.go L196); the objective's `metricStrategies`, each metric (objective first,
  then the additional ones) extracted by `max` when maximizing and `min` when minimizing
  (L49-95, common_types.go L140-142); `distribution: uniform` for every parameter declaring none
  (L194-200, experiment_types.go L235).
"""

from __future__ import annotations

from typing import Any

from infra import katib, labels
from infra.settings import Settings, TrainingJobSettings
from infra.settings.experiments import TUNABLE, ExperimentSettings
from infra.workload_identity import service_account_name
from workloads import manifests

API_VERSION = "kubeflow.org/v1beta1"
KIND = "Experiment"
EXPERIMENTS_DIR = f"{manifests.MODELS_DIR}/.experiments"
# The trial parameter that carries the trial's own name (a metadata reference, not a value Katib
# searches), for the trial's export and checkpoint directories.
TRIAL_NAME = "trialName"
TRIAL_NAME_REFERENCE = "${trialSpec.Name}"
COLLECTOR = "StdOut"
# The trainer's container, as the TFJob names it (the operator finds it by this name) and as a Job
# trial names it.
TFJOB_CONTAINER = "tensorflow"
JOB_CONTAINER = "training"
MASTER_POD = {"training.kubeflow.org/job-role": "master"}
CONDITIONS = {
    "TFJob": (
        'status.conditions.#(type=="Succeeded")#|#(status=="True")#',
        'status.conditions.#(type=="Failed")#|#(status=="True")#',
    ),
    "Job": (
        'status.conditions.#(type=="Complete")#|#(status=="True")#',
        'status.conditions.#(type=="Failed")#|#(status=="True")#',
    ),
}
# What the trainer prints besides the objective (training/train.py REPORTED_METRICS).
TRAINER_METRICS = ("test_accuracy", "test_loss")
# Katib's defaults (see the module's docstring).
RESUME_POLICY = "Never"
EXTRACT_BY = {"maximize": "max", "minimize": "min"}
DEFAULT_DISTRIBUTION = "uniform"


def trial_parameter(name: str) -> str:
    """The trial parameter for a trainer flag: learning_rate -> learningRate."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def placeholder(trial_parameter_name: str) -> str:
    return "${trialParameters." + trial_parameter_name + "}"


def trial_dir(team: str, experiment: str) -> str:
    return f"{EXPERIMENTS_DIR}/{team}/{experiment}/{placeholder(TRIAL_NAME)}"


def trial_command(team: str, experiment: ExperimentSettings) -> list[str]:
    """`training.train` with the tuned flags as placeholders and the fixed ones as values."""
    export = trial_dir(team, experiment.name)
    tuned = set(experiment.tuned())
    fixed = {"epochs": str(experiment.trial.epochs), "batch_size": str(experiment.trial.batch_size)}
    flags = []
    for name, (flag, *_) in TUNABLE.items():
        if name in tuned:
            flags.append(f"{flag}={placeholder(trial_parameter(name))}")
        elif name in fixed:
            flags.append(f"{flag}={fixed[name]}")
    return [
        "python",
        "-m",
        "training.train",
        f"--data={manifests.DATA_DIR}/mnist.npz",
        f"--export-dir={export}",
        f"--checkpoint-dir={manifests.checkpoint_dir(team, experiment.name)}/"
        + placeholder(TRIAL_NAME),
        f"--metrics-file={export}.metrics.json",
        *flags,
    ]


def _as_job_settings(team: str, experiment: ExperimentSettings) -> TrainingJobSettings:
    trial = experiment.trial
    # Through the model's own validation, with the stack file's (camelCase) keys.
    return TrainingJobSettings.model_validate(
        {
            "name": experiment.name,
            "workers": trial.workers,
            "gpusPerWorker": trial.gpus_per_worker,
            "pool": trial.pool,
            "cpu": trial.cpu,
            "memory": trial.memory,
            "epochs": trial.epochs,
            "batchSize": trial.batch_size,
            "activeDeadlineSeconds": trial.active_deadline_seconds,
            "binPacking": trial.bin_packing,
            "image": trial.image,
            "artifacts": trial.artifacts,
            "command": trial_command(team, experiment),
        }
    )


def _trial_pod(template: dict[str, Any], account: str) -> dict[str, Any]:
    """A trial's pod template: its own account, and the label Katib's pod mutator selects."""
    template["spec"]["serviceAccountName"] = account
    metadata = template.setdefault("metadata", {})
    metadata["labels"] = {**(metadata.get("labels") or {}), **katib.TRIAL_POD_LABEL}
    return template


def trial_spec(
    settings: Settings, team: str, experiment: ExperimentSettings, image: Any = None
) -> dict[str, Any]:
    """The job each trial runs: a TFJob of `workers` workers, or a batch Job of one pod."""
    account = service_account_name(KIND, experiment.name)
    tfjob = manifests.tfjob(settings, team, _as_job_settings(team, experiment), image)
    for replica in tfjob["spec"]["tfReplicaSpecs"].values():
        _trial_pod(replica["template"], account)
    workers = tfjob["spec"]["tfReplicaSpecs"]["Worker"]
    if experiment.trial.kind == "TFJob":
        return {"apiVersion": tfjob["apiVersion"], "kind": "TFJob", "spec": tfjob["spec"]}
    # One pod: the worker's template as it is, without TF_CONFIG's port (no peers to talk to).
    template = workers["template"]
    [container] = template["spec"]["containers"]
    container["name"] = JOB_CONTAINER
    del container["ports"]
    template["spec"]["restartPolicy"] = "Never"
    run_policy = tfjob["spec"]["runPolicy"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "backoffLimit": run_policy["backoffLimit"],
            "activeDeadlineSeconds": run_policy["activeDeadlineSeconds"],
            "template": template,
        },
    }


def _feasible_space(parameter: Any) -> dict[str, Any]:
    space: dict[str, Any] = {}
    for key in ("min", "max", "step", "list"):
        value = getattr(parameter, key)
        if value is not None:
            space[key] = list(value) if key == "list" else value
    # Katib sets it on every parameter, lists included.
    space["distribution"] = parameter.distribution or DEFAULT_DISTRIBUTION
    return space


def experiment(
    settings: Settings, team: str, declared: ExperimentSettings, image: Any = None
) -> dict[str, Any]:
    """The Katib Experiment of one declared experiment."""
    kind = declared.trial.kind
    additional = [m for m in TRAINER_METRICS if m != declared.objective.metric]
    extract = EXTRACT_BY[declared.objective.type]
    objective: dict[str, Any] = {
        "type": declared.objective.type,
        "objectiveMetricName": declared.objective.metric,
        "additionalMetricNames": additional,
        "metricStrategies": [
            {"name": metric, "value": extract}
            for metric in (declared.objective.metric, *additional)
        ],
    }
    if declared.objective.goal is not None:
        objective["goal"] = declared.objective.goal
    algorithm: dict[str, Any] = {"algorithmName": declared.algorithm.name}
    if declared.algorithm.settings:
        algorithm["algorithmSettings"] = [
            {"name": key, "value": value} for key, value in declared.algorithm.settings.items()
        ]
    success, failure = CONDITIONS[kind]
    template: dict[str, Any] = {
        "primaryContainerName": TFJOB_CONTAINER if kind == "TFJob" else JOB_CONTAINER,
        "successCondition": success,
        "failureCondition": failure,
        "trialParameters": [
            *(
                {
                    "name": trial_parameter(parameter.name),
                    "description": f"{TUNABLE[parameter.name][0]} of training.train",
                    "reference": parameter.name,
                }
                for parameter in declared.parameters
            ),
            {
                "name": TRIAL_NAME,
                "description": "the trial's name, for its export and checkpoint directories",
                "reference": TRIAL_NAME_REFERENCE,
            },
        ],
        "trialSpec": trial_spec(settings, team, declared, image),
    }
    if kind == "TFJob":
        template["primaryPodLabels"] = dict(MASTER_POD)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": declared.name,
            "namespace": team,
            "labels": {
                **labels.common("experiments"),
                labels.TEAM: team,
                "app.kubernetes.io/name": declared.name,
            },
        },
        "spec": {
            "objective": objective,
            "algorithm": algorithm,
            "parallelTrialCount": declared.parallel_trial_count,
            "resumePolicy": RESUME_POLICY,
            "maxTrialCount": declared.max_trial_count,
            "maxFailedTrialCount": declared.max_failed_trial_count,
            "metricsCollectorSpec": {"collector": {"kind": COLLECTOR}},
            "parameters": [
                {
                    "name": parameter.name,
                    "parameterType": parameter.type,
                    "feasibleSpace": _feasible_space(parameter),
                }
                for parameter in declared.parameters
            ],
            "trialTemplate": template,
        },
    }

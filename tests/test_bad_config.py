"""Bad configurations stop the program before it registers anything, naming the offending key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness.cli_config import StackConfigError
from harness.program import ProgramError, run_program, stack_config
from infra.settings import SettingsError

Config = dict[str, Any]


def _gpu(config: Config) -> Config:
    pool: Config = config["ml-platform:nodePools"]["gpu"][0]
    return pool


def _set(path: str, value: Any) -> Callable[[Config], None]:
    """Set `ml-platform:<a>.<b>...` to value (creating dicts on the way)."""

    def apply(config: Config) -> None:
        key, *rest = path.split(".")
        target = config.setdefault(f"ml-platform:{key}", {})
        for part in rest[:-1]:
            target = target.setdefault(part, {})
        if rest:
            target[rest[-1]] = value
        else:
            config[f"ml-platform:{key}"] = value

    return apply


def _gpu_set(key: str, value: Any) -> Callable[[Config], None]:
    def apply(config: Config) -> None:
        _gpu(config)[key] = value

    return apply


def _duplicate_gpu_pool(config: Config) -> None:
    pools = config["ml-platform:nodePools"]["gpu"]
    pools.append(dict(pools[0]))


def _duplicate_team(config: Config) -> None:
    config["ml-platform:teams"].append({"name": "research"})


def _no_https_with(artifacts_key: str) -> Callable[[Config], None]:
    """Switch HTTPS egress off in dev's research team and leave S3 access on one key only."""

    def apply(config: Config) -> None:
        team = config["ml-platform:teams"][0]
        team["network"] = {"httpsEgress": False}
        team["artifacts"] = "none"
        for kind in ("trainingJobs", "notebooks"):
            for item in team.get(kind, []):
                item["artifacts"] = "none"
        if artifacts_key == "artifacts":
            team["artifacts"] = "read"
        else:
            kind, position = artifacts_key.rstrip("]").split("[")
            team[kind][int(position)]["artifacts"] = "readwrite"

    return apply


def _drop(key: str) -> Callable[[Config], None]:
    def apply(config: Config) -> None:
        del config[f"ml-platform:{key}"]

    return apply


def _mig_pool(profile: str) -> Callable[[Config], None]:
    def apply(config: Config) -> None:
        _gpu(config).update(
            instanceTypes=["p5.48xlarge"],
            capacityType="ON_DEMAND",
            sharing={"mode": "mig", "migProfile": profile},
        )

    return apply


def _old_cluster_with_bin_packing(config: Config) -> None:
    config["ml-platform:cluster"]["kubernetesVersion"] = "1.31"
    config["ml-platform:gpu"] = {"binPackingScheduler": True}


def _job(**changes: Any) -> Callable[[Config], None]:
    def apply(config: Config) -> None:
        config["ml-platform:teams"][0]["trainingJobs"][0].update(changes)

    return apply


def _experiment(trial: Config | None = None, **changes: Any) -> Callable[[Config], None]:
    """Change dev's research experiment (and its `trial`)."""

    def apply(config: Config) -> None:
        declared = config["ml-platform:teams"][0]["experiments"][0]
        declared.update(changes)
        declared["trial"].update(trial or {})

    return apply


def _experiment_only_tfjob_without_operator(config: Config) -> None:
    config["ml-platform:kubeflow"] = {
        "trainingOperator": {"enabled": False},
        "katib": {"enabled": True},
    }
    config["ml-platform:teams"][0]["trainingJobs"] = []


def _without_katib(config: Config) -> None:
    config["ml-platform:kubeflow"] = {}


def _without_training_operator(config: Config) -> None:
    config["ml-platform:kubeflow"] = {"trainingOperator": {"enabled": False}}


def _unknown_root_key(config: Config) -> None:
    config["ml-platform:nodepools"] = {}


# (stack to start from, change, key path the message must name, fragment it must contain)
CASES: dict[str, tuple[str, Callable[[Config], None], str, str]] = {
    "unknown root key": (
        "dev",
        _unknown_root_key,
        "ml-platform:nodepools",
        "Did you mean `nodePools`",
    ),
    "training job TTL": (
        "dev",
        _job(ttlSecondsAfterFinished=3600),
        "ml-platform:teams[0].trainingJobs[0].ttlSecondsAfterFinished",
        "finished jobs are kept, not expired",
    ),
    # The cluster name also names the S3 bucket, the ECR repositories and IAM roles.
    "cluster name in upper case": (
        "dev",
        _set("cluster.name", "ML-Dev"),
        "ml-platform:cluster.name",
        "use lower-case letters, digits and single '-'",
    ),
    "cluster name with an underscore": (
        "dev",
        _set("cluster.name", "ml_dev"),
        "ml-platform:cluster.name",
        "which allow no upper case or '_'",
    ),
    "cluster name too long for its IAM role names": (
        "dev",
        _set("cluster.name", "research-platform-eu-central-1-staging"),
        "ml-platform:cluster.name",
        "use at most 36 characters (it has 38)",
    ),
    "unknown nested key": (
        "dev",
        _set("cluster.kubernetesVersoin", "1.35"),
        "ml-platform:cluster.kubernetesVersoin",
        "unknown key",
    ),
    "wrong type": (
        "dev",
        _set("nodePools.system.minSize", "two"),
        "ml-platform:nodePools.system.minSize",
        "valid integer",
    ),
    "negative size": (
        "dev",
        _gpu_set("minSize", -1),
        "ml-platform:nodePools.gpu[0].minSize",
        "greater than or equal to 0",
    ),
    "zero max size": (
        "dev",
        _gpu_set("maxSize", 0),
        "ml-platform:nodePools.gpu[0].maxSize",
        "greater than or equal to 1",
    ),
    "min above max": (
        "dev",
        _gpu_set("minSize", 5),
        "ml-platform:nodePools.gpu[0].minSize",
        "larger than max size 4",
    ),
    "duplicate GPU pool": (
        "dev",
        _duplicate_gpu_pool,
        "ml-platform:nodePools.gpu[1].name",
        "duplicate GPU pool name 'gpu'",
    ),
    "GPU pool name too long for EKS": (
        "dev",
        _gpu_set("name", "a-very-long-gpu-pool-name-for-training-jobs"),
        "ml-platform:nodePools.gpu[0].name",
        "at most 36 characters",
    ),
    "MIG on a GPU without MIG": (
        "dev",
        _gpu_set("sharing", {"mode": "mig", "migProfile": "1g.10gb"}),
        "ml-platform:nodePools.gpu[0].sharing.mode",
        "pool 'gpu': g5.xlarge (NVIDIA A10G) cannot be partitioned with MIG",
    ),
    "MIG profile the GPU does not have": (
        "dev",
        _mig_pool("1g.5gb"),
        "ml-platform:nodePools.gpu[0].sharing.migProfile",
        "'1g.5gb' is not a MIG profile of p5.48xlarge",
    ),
    "time-slicing without replicas": (
        "dev",
        _gpu_set("sharing", {"mode": "time-slicing"}),
        "ml-platform:nodePools.gpu[0].sharing.replicas",
        "number of pods per GPU",
    ),
    "sharing key of another mode": (
        "dev",
        _gpu_set("sharing", {"mode": "time-slicing", "replicas": 4, "migProfile": "1g.10gb"}),
        "ml-platform:nodePools.gpu[0].sharing.migProfile",
        "does not apply to sharing mode `time-slicing`",
    ),
    "bin-packing scheduler on an unpinned version": (
        "local",
        _old_cluster_with_bin_packing,
        "ml-platform:gpu.binPackingScheduler",
        "no kube-scheduler image is pinned",
    ),
    "price of an unknown instance type": (
        "dev",
        _set("gpu.prices", {"g5.xlarge": 0.9, "m7i.large": 0.1}),
        "ml-platform:gpu.prices.m7i.large",
        "'m7i.large' is not a GPU instance type of the catalogue",
    ),
    "price of zero": (
        "dev",
        _set("gpu.prices", {"g5.xlarge": 0}),
        "ml-platform:gpu.prices.g5.xlarge",
        "greater than zero",
    ),
    "team name too long for an EFS workspace": (
        "dev",
        _set("teams", [{"name": "computer-vision-and-multimodal-research-group"}]),
        "ml-platform:teams[0].name",
        "too long for EFS",
    ),
    # Katib experiments: what Katib's webhook or suggestion service would refuse, refused here.
    "experiment without Katib": (
        "dev",
        _without_katib,
        "ml-platform:teams[0].experiments[0].name",
        "needs `kubeflow.katib.enabled: true`",
    ),
    "experiment name longer than Katib takes": (
        "dev",
        _experiment(name="a" * 41),
        "ml-platform:teams[0].experiments[0].name",
        "at most 40 characters",
    ),
    "objective in the wrong direction": (
        "dev",
        _experiment(objective={"metric": "test_accuracy", "type": "minimize"}),
        "ml-platform:teams[0].experiments[0].objective.type",
        "test_accuracy is better when larger; use `type: maximize`",
    ),
    "objective the trainer does not report": (
        "dev",
        _experiment(objective={"metric": "val_accuracy", "type": "maximize"}),
        "ml-platform:teams[0].experiments[0].objective.metric",
        "test_accuracy",
    ),
    "setting of another algorithm": (
        "dev",
        _experiment(algorithm={"name": "random", "settings": {"gamma": "0.5"}}),
        "ml-platform:teams[0].experiments[0].algorithm.settings.gamma",
        "`random` has no setting 'gamma'; it takes random_state",
    ),
    "bad bayesian optimisation setting": (
        "dev",
        _experiment(algorithm={"name": "bayesianoptimization", "settings": {"acq_func": "UCB"}}),
        "ml-platform:teams[0].experiments[0].algorithm.settings.acq_func",
        "'UCB' is not a valid acq_func",
    ),
    "grid over a double range without a step": (
        "dev",
        _experiment(algorithm={"name": "grid"}),
        "ml-platform:teams[0].experiments[0].parameters[0].step",
        "grid search needs a `step`",
    ),
    "grid with more trials than combinations": (
        "dev",
        _experiment(
            algorithm={"name": "grid"},
            parameters=[{"name": "hidden_units", "type": "discrete", "list": ["64", "128"]}],
            parallelTrialCount=1,
            maxTrialCount=3,
        ),
        "ml-platform:teams[0].experiments[0].maxTrialCount",
        "grid search has only 2 combinations",
    ),
    "a whole-number flag searched as a double": (
        "dev",
        _experiment(
            parameters=[{"name": "hidden_units", "type": "double", "min": "8", "max": "9"}]
        ),
        "ml-platform:teams[0].experiments[0].parameters[0].type",
        "hidden_units is a whole number",
    ),
    "dropout of 1 or more": (
        "dev",
        _experiment(parameters=[{"name": "dropout", "type": "double", "min": "0", "max": "1.5"}]),
        "ml-platform:teams[0].experiments[0].parameters[0].max",
        "dropout must be at least 0.0 and at most 0.99",
    ),
    "a log distribution from 0": (
        "dev",
        _experiment(
            parameters=[
                {
                    "name": "dropout",
                    "type": "double",
                    "min": "0",
                    "max": "0.5",
                    "distribution": "logUniform",
                }
            ]
        ),
        "ml-platform:teams[0].experiments[0].parameters[0].min",
        "`logUniform` takes the logarithm of min, so min must be above 0, not 0",
    ),
    "an unbounded normal distribution for a bounded flag": (
        "dev",
        _experiment(
            parameters=[
                {
                    "name": "dropout",
                    "type": "double",
                    "min": "0.1",
                    "max": "0.5",
                    "distribution": "normal",
                }
            ]
        ),
        "ml-platform:teams[0].experiments[0].parameters[0].distribution",
        "the trainer refuses dropout below 0.0 or above 0.99; use `uniform` or `logUniform`",
    ),
    "an unbounded log-normal distribution for a bounded flag": (
        "dev",
        _experiment(
            parameters=[
                {
                    "name": "learning_rate",
                    "type": "double",
                    "min": "0.0001",
                    "max": "0.01",
                    "distribution": "logNormal",
                }
            ]
        ),
        "ml-platform:teams[0].experiments[0].parameters[0].distribution",
        "`logNormal` draws values outside min and max",
    ),
    "a step that rounds random draws outside the range": (
        "dev",
        _experiment(
            parameters=[
                {"name": "batch_size", "type": "int", "min": "10", "max": "100", "step": "20"}
            ]
        ),
        "ml-platform:teams[0].experiments[0].parameters[0].step",
        "`random` rounds each value to a multiple of step (20), so with min 10 and max 100",
    ),
    "bayesian optimisation of a double from 0": (
        "dev",
        _experiment(
            algorithm={"name": "bayesianoptimization"},
            parameters=[{"name": "dropout", "type": "double", "min": "0", "max": "0.5"}],
        ),
        "ml-platform:teams[0].experiments[0].parameters[0].min",
        "`bayesianoptimization` searches a `double` on a log scale, so min must be above 0",
    ),
    "a range given as a list": (
        "dev",
        _experiment(parameters=[{"name": "epochs", "type": "int", "list": ["1", "2"]}]),
        "ml-platform:teams[0].experiments[0].parameters[0].list",
        "takes min and max, not list",
    ),
    "more trials at once than in all": (
        "dev",
        _experiment(parallelTrialCount=9),
        "ml-platform:teams[0].experiments[0].parallelTrialCount",
        "9 trials at once is more than maxTrialCount (8)",
    ),
    "TFJob trials without the training operator": (
        "dev",
        _experiment_only_tfjob_without_operator,
        "ml-platform:teams[0].experiments[0].trial.kind",
        "TFJob trials need `kubeflow.trainingOperator.enabled: true`",
    ),
    "GPU trials on the system pool": (
        "dev",
        _experiment(trial={"pool": "system"}),
        "ml-platform:teams[0].experiments[0].trial.pool",
        "GPU work needs a GPU pool (gpu)",
    ),
    "a Job trial of several workers": (
        "dev",
        _experiment(trial={"kind": "Job", "workers": 2}),
        "ml-platform:teams[0].experiments[0].trial.workers",
        "a `Job` trial is one pod",
    ),
    "job without the training operator": (
        "dev",
        _without_training_operator,
        "ml-platform:teams[0].trainingJobs[0].name",
        "needs `kubeflow.trainingOperator.enabled: true`",
    ),
    "GPU job on the system pool": (
        "dev",
        _job(pool="system"),
        "ml-platform:teams[0].trainingJobs[0].pool",
        "GPU work needs a GPU pool (gpu)",
    ),
    "job on an unknown pool": (
        "dev",
        _job(pool="a100"),
        "ml-platform:teams[0].trainingJobs[0].pool",
        "no pool 'a100'; pools: system, gpu",
    ),
    "bin packing without the scheduler": (
        "dev",
        _job(binPacking=True),
        "ml-platform:teams[0].trainingJobs[0].binPacking",
        "needs `gpu.binPackingScheduler: true`",
    ),
    # The built-in trainer runs MultiWorkerMirroredStrategy: no PS task, no evaluator role.
    "parameter servers for the built-in trainer": (
        "dev",
        _job(parameterServers=2),
        "ml-platform:teams[0].trainingJobs[0].parameterServers",
        "the built-in trainer uses MultiWorkerMirroredStrategy, which has no parameter servers",
    ),
    "evaluator for the built-in trainer": (
        "dev",
        _job(evaluator=True),
        "ml-platform:teams[0].trainingJobs[0].evaluator",
        "the built-in trainer has no evaluator role",
    ),
    "pytorch job without a command": (
        "dev",
        _job(framework="pytorch"),
        "ml-platform:teams[0].trainingJobs[0].command",
        "needs its own `image` and `command`",
    ),
    "latest image": (
        "dev",
        _set("training", {"image": "registry.example.com/ml/training:latest"}),
        "ml-platform:training.image",
        "uses the `latest` tag",
    ),
    "unpinned image": (
        "dev",
        _set("training", {"image": "registry.example.com/ml/training"}),
        "ml-platform:training.image",
        "not a pinned image reference",
    ),
    "both an image and a build": (
        "dev",
        _set("training", {"build": True, "image": "registry.example.com/ml/training:1"}),
        "ml-platform:training.image",
        "either an image or `build: true`",
    ),
    "building on an existing cluster": (
        "local",
        _set("training", {"build": True}),
        "ml-platform:training.build",
        "needs mode `eks`",
    ),
    "served model of an unknown team": (
        "dev",
        _set(
            "serving",
            {"buildInferenceImage": True, "models": [{"name": "mnist", "team": "vision"}]},
        ),
        "ml-platform:serving.models[0].team",
        "no team 'vision'",
    ),
    "served model on an unknown pool": (
        "dev",
        _set(
            "serving",
            {
                "buildInferenceImage": True,
                "models": [{"name": "mnist", "team": "research", "pool": "a100"}],
            },
        ),
        "ml-platform:serving.models[0].pool",
        "no pool 'a100'",
    ),
    "inference API without an image": (
        "local",
        _set("serving", {"models": [{"name": "mnist", "team": "research"}]}),
        "ml-platform:serving.models[0].inferenceApi.enabled",
        "no image for the inference API",
    ),
    "internal load balancer off AWS": (
        "local",
        _set(
            "serving",
            {
                "inferenceImage": "registry.example.com/ml/inference:1",
                "models": [
                    {"name": "mnist", "team": "research", "exposure": "internalLoadBalancer"}
                ],
            },
        ),
        "ml-platform:serving.models[0].exposure",
        "use `cluster` here",
    ),
    "duplicate team": ("dev", _duplicate_team, "ml-platform:teams[1].name", "duplicate team name"),
    "empty AZ list": (
        "dev",
        _set("aws.availabilityZones", []),
        "ml-platform:aws.availabilityZones",
        "at least two availability zones",
    ),
    "AZ outside the region": (
        "dev",
        _set("aws.availabilityZones", ["us-east-1a", "eu-west-1b"]),
        "ml-platform:aws.availabilityZones[1]",
        "not an availability zone of region us-east-1",
    ),
    "GPU pool on a CPU instance": (
        "dev",
        _gpu_set("instanceTypes", ["m5.large", "m6i.large"]),
        "ml-platform:nodePools.gpu[0].instanceTypes[0]",
        "m5.large has no GPU",
    ),
    "GPU pool on an unsupported GPU": (
        "dev",
        _gpu_set("instanceTypes", ["p3.2xlarge", "g5.xlarge"]),
        "ml-platform:nodePools.gpu[0].instanceTypes[0]",
        "not a supported GPU instance type",
    ),
    "GPU pool with a CPU AMI": (
        "dev",
        _gpu_set("amiType", "AL2023_x86_64_STANDARD"),
        "ml-platform:nodePools.gpu[0].amiType",
        "no NVIDIA driver",
    ),
    "spot with one instance type": (
        "dev",
        _gpu_set("instanceTypes", ["g5.xlarge"]),
        "ml-platform:nodePools.gpu[0].instanceTypes",
        "at least two instance types",
    ),
    "unsupported Kubernetes version": (
        "dev",
        _set("cluster.kubernetesVersion", "1.29"),
        "ml-platform:cluster.kubernetesVersion",
        "not supported for EKS",
    ),
    "unquoted Kubernetes version": (
        "dev",
        _set("cluster.kubernetesVersion", 1.3),
        "ml-platform:cluster.kubernetesVersion",
        "quoted string",
    ),
    "size that is not a quantity": (
        "dev",
        _set("storage.models.size", "20 gigs"),
        "ml-platform:storage.models.size",
        "not a Kubernetes quantity",
    ),
    "duplicate volume names": (
        "dev",
        _set("storage.models.name", "datasets"),
        "ml-platform:storage.models.name",
        "duplicate volume name 'datasets'",
    ),
    "NFS mode without the nfs section": (
        "local",
        _set("storage", {"mode": "nfs"}),
        "ml-platform:storage.nfs",
        "mode `nfs` needs",
    ),
    "eks without aws section": ("dev", _drop("aws"), "ml-platform:aws", "needs `aws:"),
    "existing cluster without context": (
        "local",
        _set("cluster.context", None),
        "ml-platform:cluster.context",
        "kubeconfig context",
    ),
    "NFS without a server": (
        "local",
        _set("storage.nfs", {"path": "/exports"}),
        "ml-platform:storage.nfs.server",
        "Field required",
    ),
    "NFS server named by its cluster Service DNS name": (
        "local",
        _set("storage.nfs.server", "nfs.storage.svc.cluster.local"),
        "ml-platform:storage.nfs.server",
        "the node mounts NFS",
    ),
    "NFS server named by a short Service DNS name": (
        "local",
        _set("storage.nfs.server", "nfs.storage.svc"),
        "ml-platform:storage.nfs.server",
        "ClusterIP",
    ),
    "NFS server named in another cluster domain": (
        "local",
        _set("storage.nfs.server", "NFS.Storage.SVC.corp.internal."),
        "ml-platform:storage.nfs.server",
        "cluster-internal",
    ),
    "existing cluster with EFS": (
        "local",
        _set("storage.mode", "efs"),
        "ml-platform:storage.mode",
        "no EFS",
    ),
    "baseline team without a reason": (
        "local",
        _set("teams", [{"name": "vision", "podSecurity": "baseline"}]),
        "ml-platform:teams[0].podSecurityReason",
        "must say why",
    ),
    "team named like a platform namespace": (
        "local",
        _set("teams", [{"name": "monitoring"}]),
        "ml-platform:teams[0].name",
        "platform namespace",
    ),
    "CloudWatch logs on an existing cluster": (
        "local",
        _set("logging", {"destination": "cloudwatch"}),
        "ml-platform:logging.destination",
        "use `forward`",
    ),
    "log retention CloudWatch does not offer": (
        "dev",
        _set("logging.retentionDays", 10),
        "ml-platform:logging.retentionDays",
        "use one of 1, 3, 5, 7, 14, 30",
    ),
    "team S3 access on an existing cluster": (
        "local",
        _set("teams", [{"name": "vision", "artifacts": "readwrite"}]),
        "ml-platform:teams[0].artifacts",
        "on an existing cluster use `none`",
    ),
    "no HTTPS egress for a team with S3 access": (
        "dev",
        _no_https_with("artifacts"),
        "ml-platform:teams[0].network.httpsEgress",
        "`artifacts: read` reaches S3 over HTTPS",
    ),
    "no HTTPS egress for a job with S3 access": (
        "dev",
        _no_https_with("trainingJobs[0]"),
        "ml-platform:teams[0].network.httpsEgress",
        "`trainingJobs[0].artifacts: readwrite` reaches S3 over HTTPS",
    ),
    "no HTTPS egress for a notebook with S3 access": (
        "dev",
        _no_https_with("notebooks[0]"),
        "ml-platform:teams[0].network.httpsEgress",
        "set `httpsEgress: true` or `notebooks[0].artifacts: none`",
    ),
    "forward without an aggregator": (
        "local",
        _set("logging", {"destination": "forward"}),
        "ml-platform:logging.forward",
        "needs `forward: {host",
    ),
    "existing cluster without a block storage class": (
        "local",
        _set("storage.blockStorageClassName", None),
        "ml-platform:storage.blockStorageClassName",
        "the block volumes of monitoring and Kubeflow Pipelines need a StorageClass",
    ),
    "block storage class that is not a name": (
        "local",
        _set("storage.blockStorageClassName", "Fast_SSD"),
        "ml-platform:storage.blockStorageClassName",
        "'Fast_SSD' is not a valid object name",
    ),
    "metrics server said to exist on EKS": (
        "dev",
        _set("cluster.metricsServer", {"source": "existing"}),
        "ml-platform:cluster.metricsServer.source",
        "the program installs the EKS add-on `metrics-server`",
    ),
    "kubelet TLS switch on EKS": (
        "dev",
        _set("cluster.metricsServer", {"kubeletInsecureTls": True}),
        "ml-platform:cluster.metricsServer.kubeletInsecureTls",
        "only applies to the chart the program installs on an existing cluster",
    ),
    "kubelet TLS switch with the cluster's own metrics server": (
        "local",
        _set("cluster.metricsServer", {"source": "existing", "kubeletInsecureTls": True}),
        "ml-platform:cluster.metricsServer.kubeletInsecureTls",
        "`source: existing` installs none; set `source: install`",
    ),
    "unknown metrics server source": (
        "local",
        _set("cluster.metricsServer", {"source": "helm"}),
        "ml-platform:cluster.metricsServer.source",
        "'install' or 'existing'",
    ),
    "block storage class on EKS": (
        "dev",
        _set("storage.blockStorageClassName", "gp2"),
        "ml-platform:storage.blockStorageClassName",
        "creates its own class for block volumes (`gp3-encrypted`",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_fails_before_any_resource(case: str) -> None:
    stack, change, key_path, fragment = CASES[case]
    config = stack_config(stack)
    change(config)
    with pytest.raises(ProgramError) as caught:
        run_program(stack, config)
    error = caught.value
    assert isinstance(error.cause, SettingsError), error.cause
    message = str(error.cause)
    assert message.startswith(f"Pulumi.{stack}.yaml: invalid configuration"), message
    assert f"{key_path}:" in message, message
    assert fragment in message, message
    assert error.resources == [], [r.urn for r in error.resources]


def test_all_problems_are_reported_at_once() -> None:
    config = stack_config("dev")
    _set("nodePools.system.minSize", "two")(config)
    _set("storage.models.size", "lots")(config)
    with pytest.raises(ProgramError) as caught:
        run_program("dev", config)
    message = str(caught.value.cause)
    assert "2 problem(s)" in message
    assert "nodePools.system.minSize" in message
    assert "storage.models.size" in message


def test_a_value_of_the_wrong_type_is_refused_by_the_cli_and_by_the_program() -> None:
    """The CLI refuses it before the program runs; past `--skip-config-validation`, the
    program's own check names the key."""
    config = stack_config("dev")
    _set("cluster", "eks")(config)
    with pytest.raises(StackConfigError, match="'cluster' must be of type 'object'"):
        run_program("dev", config)
    with pytest.raises(ProgramError) as caught:
        run_program("dev", config, check_config=False)
    message = str(caught.value.cause)
    assert isinstance(caught.value.cause, SettingsError)
    assert "ml-platform:cluster: " in message
    assert "valid dictionary" in message

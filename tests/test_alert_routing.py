"""Alert routing: the settings, Alertmanager's configuration and how it reaches the cluster,
credentials kept secret end to end, the upstream fields it relies on, and amtool's verdict."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import render
from harness.program import (
    PLACEHOLDER_MARK,
    ProgramError,
    ProgramRun,
    engine_config,
    run_program,
    secret_placeholder,
    stack_config,
    stack_settings,
)
from infra import alert_routing, alerts, versions
from infra.alert_delivery import SNS_IDENTITY_ANNOTATION
from infra.monitoring import ALERTMANAGER_SERVICE_ACCOUNT, FULLNAME
from infra.settings import Settings, SettingsError
from tests.amtool import AMTOOL_VERSION, check_config, needs_amtool, receivers_for
from tests.conftest import stack_run
from tests.promtool import assert_rule_tests_pass, expected, needs_promtool, series
from tests.upstream_facts import facts

Config = dict[str, Any]
KEY_EAST = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
KEY_WEST = "arn:aws:kms:us-west-2:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
SECRET = {"secure": "v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="}  # what `config set --secret` writes
RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET_TYPE = "kubernetes:core/v1:Secret"


def every_receiver(stack: str = "prod") -> Config:
    """The stack with one receiver of each kind, every credential a nested secret, as
    `pulumi config set --secret --path` leaves them in the stack file."""
    config = stack_config(stack)
    receivers: Config = {
        "platform-chat": {"slack": {"apiUrl": dict(SECRET), "channel": "#ml-platform"}},
        "platform-pager": {"pagerduty": {"routingKey": dict(SECRET)}},
        "research": {
            "email": {
                "to": "research@example.com",
                "from": "alertmanager@example.com",
                "smarthost": "email-smtp.us-east-1.amazonaws.com:587",
                "authUsername": "AKIAEXAMPLE",
                "authPassword": dict(SECRET),
            },
            "webhook": {"url": "https://hooks.example.com/alerts", "bearerToken": dict(SECRET)},
        },
        "vision": {"sns": {"topicArn": "arn:aws:sns:us-east-1:111122223333:vision-alerts"}},
        "heartbeat": {"webhook": {"url": "https://heartbeat.example.com/ping/ml-prod"}},
    }
    monitoring = config.setdefault("ml-platform:monitoring", {})
    monitoring["alerting"] = {
        "receivers": receivers,
        "platform": {"notify": "platform-chat", "pager": "platform-pager"},
        "heartbeat": "heartbeat",
    }
    teams = {team["name"]: team for team in config["ml-platform:teams"]}
    teams["research"]["alerts"] = {"notify": "research", "pager": "platform-pager"}
    teams["vision"]["alerts"] = {"notify": "vision"}
    return config


def credential_values(settings: Settings) -> list[str]:
    values = list(alert_routing.credentials(settings.monitoring.alerting).values())
    assert len(values) == 4, values  # slack, pagerduty, SMTP, webhook token
    return values


# ---------------------------------------------------------------------------------------------
# Settings


def _alerting(config: Config) -> Config:
    alerting: Config = config["ml-platform:monitoring"]["alerting"]
    return alerting


def _without(path: tuple[str, ...]) -> Any:
    def apply(config: Config) -> None:
        target = _alerting(config)
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return apply


def _set_alerting(path: tuple[str, ...], value: Any) -> Any:
    def apply(config: Config) -> None:
        target = _alerting(config)
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value

    return apply


def _team_alerts(value: Any) -> Any:
    def apply(config: Config) -> None:
        config["ml-platform:teams"][1]["alerts"] = value

    return apply


BAD = {
    "unknown platform receiver": (
        _set_alerting(("platform",), {"notify": "chat"}),
        "ml-platform:monitoring.alerting.platform.notify",
        "no receiver 'chat' in monitoring.alerting.receivers",
    ),
    "unknown team receiver": (
        _team_alerts({"notify": "vision", "pager": "oncall"}),
        "ml-platform:teams[1].alerts.pager",
        "no receiver 'oncall'",
    ),
    "unknown heartbeat receiver": (
        _set_alerting(("heartbeat",), "snitch"),
        "ml-platform:monitoring.alerting.heartbeat",
        "no receiver 'snitch'",
    ),
    "receiver without integration": (
        _set_alerting(("receivers", "vision"), {}),
        "ml-platform:monitoring.alerting.receivers.vision",
        "a receiver needs at least one of slack, pagerduty, email, webhook, sns",
    ),
    "receivers but no platform target": (
        _without(("platform",)),
        "ml-platform:monitoring.alerting.platform",
        "set `platform: {notify: <receiver>}`",
    ),
    "missing slack URL": (
        _set_alerting(("receivers", "platform-chat", "slack"), {"channel": "#x"}),
        "ml-platform:monitoring.alerting.receivers.platform-chat.slack.apiUrl",
        "pulumi config set --secret --path "
        "'monitoring.alerting.receivers.platform-chat.slack.apiUrl' <value>",
    ),
    "missing routing key": (
        _set_alerting(("receivers", "platform-pager", "pagerduty"), {}),
        "ml-platform:monitoring.alerting.receivers.platform-pager.pagerduty.routingKey",
        "pulumi config set --secret --path "
        "'monitoring.alerting.receivers.platform-pager.pagerduty.routingKey' <value>",
    ),
    "SMTP user without password": (
        _without(("receivers", "research", "email", "authPassword")),
        "ml-platform:monitoring.alerting.receivers.research.email.authPassword",
        "`authUsername` needs `authPassword` too",
    ),
    "token in a webhook URL": (
        _set_alerting(
            ("receivers", "heartbeat", "webhook"), {"url": "https://h.example.com/p?token=abc"}
        ),
        "ml-platform:monitoring.alerting.receivers.heartbeat.webhook.url",
        "give the URL without it and the token as `bearerToken`",
    ),
    "not an SNS topic": (
        _set_alerting(("receivers", "vision", "sns"), {"topicArn": "arn:aws:sqs:us-east-1:1:q"}),
        "ml-platform:monitoring.alerting.receivers.vision.sns.topicArn",
        "is not an SNS topic ARN",
    ),
    "KMS alias instead of a key ARN": (
        _set_alerting(
            ("receivers", "vision", "sns"),
            {
                "topicArn": "arn:aws:sns:us-east-1:111122223333:vision-alerts",
                "kmsKeyArn": "arn:aws:kms:us-east-1:111122223333:alias/alerts",
            },
        ),
        "ml-platform:monitoring.alerting.receivers.vision.sns.kmsKeyArn",
        "is not a KMS key ARN: give the key's own ARN",
    ),
    "KMS key of another region": (
        _set_alerting(
            ("receivers", "vision", "sns"),
            {"topicArn": "arn:aws:sns:us-east-1:111122223333:vision-alerts", "kmsKeyArn": KEY_WEST},
        ),
        "ml-platform:monitoring.alerting.receivers.vision.sns.kmsKeyArn",
        "the key is in us-west-2 but the topic in us-east-1",
    ),
    "unused receiver": (
        _set_alerting(("receivers", "spare"), {"webhook": {"url": "https://x.example.com/"}}),
        "ml-platform:monitoring.alerting.receivers.spare",
        "no route uses this receiver",
    ),
    "heartbeat shares a receiver with alerts": (
        _set_alerting(("heartbeat",), "vision"),
        "ml-platform:monitoring.alerting.heartbeat",
        "give the heartbeat a receiver of its own",
    ),
    "reserved receiver name": (
        _set_alerting(("receivers", "null"), {"webhook": {"url": "https://x.example.com/"}}),
        "ml-platform:monitoring.alerting.receivers.null",
        "cannot name a receiver",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_alerting_is_refused_naming_the_key_and_the_fix(case: str) -> None:
    change, key, message = BAD[case]
    config = every_receiver()
    change(config)
    with pytest.raises(SettingsError) as error:
        stack_settings("prod", config)
    assert f"{key}: " in str(error.value), str(error.value)
    assert message in str(error.value), str(error.value)


def test_sns_is_refused_on_a_cluster_without_pod_identity() -> None:
    config = stack_config("local")
    config["ml-platform:monitoring"] = {
        **config.get("ml-platform:monitoring", {}),
        "alerting": {
            "receivers": {"ops": {"sns": {"topicArn": "arn:aws:sns:us-east-1:111122223333:ops"}}},
            "platform": {"notify": "ops"},
        },
    }
    with pytest.raises(SettingsError, match=r"alerting\.receivers\.ops\.sns: .*Pod Identity"):
        stack_settings("local", config)


def test_a_credential_in_plain_text_is_refused_with_the_commands() -> None:
    config = every_receiver()
    _alerting(config)["receivers"]["platform-chat"]["slack"]["apiUrl"] = (
        "https://hooks.slack.com/services/T0/B0/plain"
    )
    # Every other credential plain too: the key carries no secret at all.
    receivers = _alerting(config)["receivers"]
    receivers["platform-pager"]["pagerduty"]["routingKey"] = "plain"
    receivers["research"]["email"]["authPassword"] = "plain"
    receivers["research"]["webhook"]["bearerToken"] = "plain"
    with pytest.raises(ProgramError) as error:
        run_program("prod", config)
    message = str(error.value.cause)
    assert isinstance(error.value.cause, SettingsError)
    assert "a credential is in plain text" in message
    assert (
        "pulumi config set --secret --path "
        "'monitoring.alerting.receivers.platform-chat.slack.apiUrl' <value>" in message
    )
    assert not error.value.resources  # before anything is registered


def test_shipped_stacks_route_without_credentials() -> None:
    """The stack files stay previewable by a real CLI: no credential, so no ciphertext needed."""
    for stack in ("dev", "prod", "local"):
        assert alert_routing.credentials(stack_settings(stack).monitoring.alerting) == {}
    prod = stack_settings("prod")
    assert prod.monitoring.alerting.platform is not None
    assert prod.monitoring.alerting.heartbeat
    assert all(team.alerts for team in prod.teams)
    assert prod.monitoring.alertmanager_replicas == 2


# ---------------------------------------------------------------------------------------------
# The harness hands the program nested secrets as the CLI does


def test_nested_secure_leaves_become_placeholders_of_the_fields_shape() -> None:
    flat, secret_keys = engine_config(
        {
            "ml-platform:monitoring": {
                "alerting": {"receivers": {"a": {"slack": {"apiUrl": dict(SECRET)}}}}
            },
            "ml-platform:teams": [{"name": "research"}],
        }
    )
    assert secret_keys == ["ml-platform:monitoring"]  # the whole key, as the engine marks it
    url = json.loads(flat["ml-platform:monitoring"])["alerting"]["receivers"]["a"]["slack"][
        "apiUrl"
    ]
    assert url.startswith("https://hooks.slack.com/services/")
    assert PLACEHOLDER_MARK in url
    assert url == secret_placeholder(
        "ml-platform:monitoring", ("alerting", "receivers", "a", "slack", "apiUrl")
    )
    assert url != secret_placeholder(
        "ml-platform:monitoring", ("alerting", "receivers", "b", "slack", "apiUrl")
    )
    assert json.loads(flat["ml-platform:teams"]) == [{"name": "research"}]


# ---------------------------------------------------------------------------------------------
# How the configuration and credentials reach Alertmanager


@pytest.fixture(scope="module")
def overlay_run() -> ProgramRun:
    return run_program("prod", every_receiver())


def _stack_values(run: ProgramRun) -> Config:
    [release] = [r for r in run.of_type(RELEASE) if r.inputs["name"] == "kube-prometheus-stack"]
    values: Config = release.inputs["values"]
    return values


def _secret(run: ProgramRun, name: str) -> Any:
    [secret] = [r for r in run.of_type(SECRET_TYPE) if r.inputs["metadata"]["name"] == name]
    return secret


def test_alertmanager_reads_the_configuration_this_program_writes(overlay_run: ProgramRun) -> None:
    settings = stack_settings("prod", every_receiver())
    spec = _stack_values(overlay_run)["alertmanager"]["alertmanagerSpec"]
    assert spec["useExistingSecret"] is True
    assert spec["configSecret"] == alert_routing.CONFIG_SECRET
    assert spec["secrets"] == [alert_routing.CREDENTIALS_SECRET]
    config = _secret(overlay_run, alert_routing.CONFIG_SECRET)
    assert config.inputs["metadata"]["namespace"] == "monitoring"
    text = config.inputs["stringData"][alert_routing.CONFIG_KEY]
    assert yaml.safe_load(text) == alert_routing.alertmanager_config(settings)
    # The credentials Secret holds each credential under the key its file is named by.
    credentials = _secret(overlay_run, alert_routing.CREDENTIALS_SECRET)
    assert credentials.inputs["stringData"] == alert_routing.credentials(
        settings.monitoring.alerting
    )
    assert "stringData" in credentials.secret_inputs
    files = {
        f"{alert_routing.SECRETS_DIR}/{path}" for path in alert_routing.credential_files(settings)
    }
    named = set(re.findall(r"\S+_file: (\S+)", text))
    assert named == files
    # Our Watchdog only: the chart's copy is off.
    assert _stack_values(overlay_run)["defaultRules"]["disabled"] == {"Watchdog": True}


def test_no_credential_reaches_the_build_output_in_plain_text(tmp_path: Path) -> None:
    config = every_receiver()
    values = credential_values(stack_settings("prod", config))
    assert not render.render("prod", tmp_path, config)
    written = sorted((tmp_path / "prod").iterdir())
    assert {p.name for p in written} == {"manifests.yaml", "resources.json", "alertmanager.yaml"}
    for path in written:
        text = path.read_text()
        leaked = [value for value in values if value in text]
        assert not leaked, f"{path.name} holds {leaked}"
        assert PLACEHOLDER_MARK not in text, path.name
    run = run_program("prod", config)
    for name, output in run.outputs.items():
        if any(value in json.dumps(output, default=str) for value in values):
            assert name in run.secret_outputs, name
    # The credentials arrive in the one Secret, masked wherever Pulumi shows them.
    masked = _secret(run, alert_routing.CREDENTIALS_SECRET).as_json()["inputs"]["stringData"]
    assert set(masked.values()) == {"[secret]"}
    assert len(masked) == len(values)


def test_sns_role_may_only_publish_to_the_configured_topics() -> None:
    run = stack_run("prod")
    settings = stack_settings("prod")
    topics = alert_routing.sns_topics(settings)
    assert len(topics) == 5
    [association] = [
        r
        for r in run.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
        if r.inputs["serviceAccount"] == ALERTMANAGER_SERVICE_ACCOUNT
    ]
    assert association.inputs["namespace"] == "monitoring"
    policies = [
        json.loads(r.inputs["policy"])
        for r in run.of_type("aws:iam/rolePolicy:RolePolicy")
        if r.parent and "alerting-sns" in r.parent
    ]
    assert policies == [
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PublishAlerts",
                    "Effect": "Allow",
                    "Action": ["sns:Publish"],
                    "Resource": topics,
                }
            ],
        }
    ]
    # Each SNS receiver signs for its topic's region.
    config = alert_routing.alertmanager_config(settings)
    for receiver in config["receivers"]:
        for sns in receiver.get("sns_configs", []):
            assert sns["sigv4"] == {"region": sns["topic_arn"].split(":")[3]}


def test_sns_role_may_use_the_key_of_an_encrypted_topic_and_no_other() -> None:
    config = every_receiver()
    receivers = config["ml-platform:monitoring"]["alerting"]["receivers"]
    receivers["vision"]["sns"]["kmsKeyArn"] = KEY_EAST
    run = run_program("prod", config)
    [policy] = [
        json.loads(r.inputs["policy"])
        for r in run.of_type("aws:iam/rolePolicy:RolePolicy")
        if r.parent and "alerting-sns" in r.parent
    ]
    assert policy["Statement"] == [
        {
            "Sid": "PublishAlerts",
            "Effect": "Allow",
            "Action": ["sns:Publish"],
            "Resource": ["arn:aws:sns:us-east-1:111122223333:vision-alerts"],
        },
        {
            "Sid": "EncryptForTopics",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
            "Resource": [KEY_EAST],
        },
    ]
    # The key is the role's business only: Alertmanager's configuration does not name it.
    assert "kms" not in yaml.safe_dump(
        alert_routing.alertmanager_config(stack_settings("prod", config))
    )


def _sns_identity(run: ProgramRun) -> str | None:
    spec = _stack_values(run)["alertmanager"]["alertmanagerSpec"]
    annotation: str | None = (
        spec.get("podMetadata", {}).get("annotations", {}).get(SNS_IDENTITY_ANNOTATION)
    )
    return annotation


def test_alertmanager_pods_roll_when_their_sns_identity_changes(overlay_run: ProgramRun) -> None:
    """Pod Identity's credentials reach a pod only when it is created: a new role, association
    or topic must change the pod template, which rolls the StatefulSet."""
    chart = facts(
        "kube-prometheus-stack-alertmanager",
        pinned=f"kube-prometheus-stack-{versions.KUBE_PROMETHEUS_STACK_CHART.version}",
    )
    operator = facts(
        "prometheus-operator-alertmanager", pinned=versions.PROMETHEUS_OPERATOR_VERSION
    )
    assert "podMetadata" in chart["spec_values"]
    assert operator["pod_template_annotations_from"] == "spec.podMetadata.annotations"

    one_topic = _sns_identity(overlay_run)
    assert one_topic
    assert re.fullmatch(r"[0-9a-f]{16}", one_topic)
    # The same identity gives the same value: no roll on an unrelated change.
    assert _sns_identity(run_program("prod", every_receiver())) == one_topic
    config = every_receiver()
    research = config["ml-platform:monitoring"]["alerting"]["receivers"]["research"]
    research["sns"] = {"topicArn": "arn:aws:sns:us-east-1:111122223333:research-alerts"}
    two_topics = _sns_identity(run_program("prod", config))
    assert two_topics
    assert two_topics != one_topic
    # Without SNS nothing is added to the pods.
    local = _stack_values(stack_run("local"))["alertmanager"]["alertmanagerSpec"]
    assert "podMetadata" not in local


def test_prod_runs_alertmanager_as_a_cluster_of_two() -> None:
    am = _stack_values(stack_run("prod"))["alertmanager"]
    assert am["alertmanagerSpec"]["replicas"] == 2
    assert am["podDisruptionBudget"] == {"enabled": True, "minAvailable": 1}
    dev = _stack_values(stack_run("dev"))["alertmanager"]
    assert dev["alertmanagerSpec"]["replicas"] == 1
    assert "podDisruptionBudget" not in dev


# ---------------------------------------------------------------------------------------------
# Upstream: every field exists where it is read


def _fields_used(config: Config) -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for receiver in config["receivers"]:
        for integration, entries in receiver.items():
            if integration == "name":
                continue
            for entry in entries:
                used.setdefault(integration, set()).update(entry)
                used.setdefault("sigv4", set()).update(entry.get("sigv4", {}))
                authorization = entry.get("http_config", {}).get("authorization", {})
                used.setdefault("http_config_authorization", set()).update(authorization)
    return used


@pytest.mark.parametrize(
    ("fixture", "pinned"),
    [
        ("alertmanager-config", versions.ALERTMANAGER_VERSION),
        ("alertmanager-config-amtool", AMTOOL_VERSION),
        ("prometheus-operator-alertmanager", versions.PROMETHEUS_OPERATOR_VERSION),
        # The Alertmanager loader the operator validates with: the module version it imports.
        (
            "alertmanager-config-operator-loader",
            facts("prometheus-operator-alertmanager", pinned=versions.PROMETHEUS_OPERATOR_VERSION)[
                "alertmanager_module"
            ],
        ),
    ],
)
def test_every_receiver_field_exists_upstream(fixture: str, pinned: str) -> None:
    """In the Alertmanager that runs, in the amtool that checks, in the operator that parses the
    configuration strictly before handing it over, and in the Alertmanager loader (the module
    version the operator imports) that it runs first."""
    known = facts(fixture, pinned=pinned)
    config = alert_routing.alertmanager_config(stack_settings("prod", every_receiver()))
    used = _fields_used(config)
    assert set(used) >= {"slack_configs", "pagerduty_configs", "email_configs"}
    for integration, fields in used.items():
        allowed = known["fields"].get(integration) or known.get(integration) or []
        assert fields <= set(allowed), (integration, fields - set(allowed))


def test_the_chart_runs_the_alertmanager_whose_fields_we_checked() -> None:
    chart = facts(
        "kube-prometheus-stack-alertmanager",
        pinned=f"kube-prometheus-stack-{versions.KUBE_PROMETHEUS_STACK_CHART.version}",
    )
    assert chart["image_tag"] == versions.ALERTMANAGER_VERSION
    assert chart["service_account"].format(fullname=FULLNAME) == ALERTMANAGER_SERVICE_ACCOUNT
    assert set(chart["spec_values"]) >= {"useExistingSecret", "configSecret", "secrets", "replicas"}
    assert chart["default_rules"]["Watchdog"]["disabled_by"] == "defaultRules.disabled.Watchdog"

    # Our inhibitions are the chart's first three, matcher for matcher.
    def normal(rule: Config) -> Config:
        return {
            key: sorted(re.sub(r'[\s"\']', "", m) for m in rule[key])
            for key in ("source_matchers", "target_matchers", "equal")
            if key in rule
        }

    assert [normal(r) for r in alert_routing.inhibit_rules()] == [
        normal(r) for r in chart["default_inhibit_rules"][:3]
    ]


def test_the_operator_accepts_the_configuration_and_mounts_the_credentials() -> None:
    operator = facts(
        "prometheus-operator-alertmanager", pinned=versions.PROMETHEUS_OPERATOR_VERSION
    )
    assert operator["config_key"] == alert_routing.CONFIG_KEY
    assert operator["secrets_dir"] == alert_routing.SECRETS_DIR
    for stack in ("dev", "prod", "local"):
        root = alert_routing.alertmanager_config(stack_settings(stack))["route"]
        assert all(root.get(key) for key in operator["root_route"]["requires"])
        assert not set(root) & set(operator["root_route"]["forbids"])


# ---------------------------------------------------------------------------------------------
# amtool: the configuration is valid and routes as documented


@needs_amtool
@pytest.mark.parametrize("stack", ["dev", "prod", "local"])
def test_amtool_accepts_every_stacks_rendered_configuration(stack: str, tmp_path: Path) -> None:
    assert not render.render(stack, tmp_path)
    result = check_config(tmp_path / stack / "alertmanager.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def overlay_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The configuration with every receiver kind, its credential files where it reads them."""
    directory = tmp_path_factory.mktemp("alertmanager")
    settings = stack_settings("prod", every_receiver())
    for relative, value in alert_routing.credential_files(settings).items():
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_text(value)
    path = directory / "alertmanager.yaml"
    config = alert_routing.alertmanager_config(settings, secrets_dir=str(directory))
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@needs_amtool
def test_amtool_accepts_every_receiver_kind(overlay_file: Path) -> None:
    result = check_config(overlay_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 receivers" in result.stdout  # null and the five declared


ROUTES = {
    # (labels, receivers)
    "team warning": ({"alertname": "TfServingSlow", "namespace": "serving", "team": "research",
                      "severity": "warning"}, ["research"]),
    "team critical pages": ({"alertname": "TfServingErrorRate", "namespace": "serving",
                             "team": "research", "severity": "critical"}, ["platform-pager"]),
    "team without pager: critical to notify": ({"alertname": "InferenceModelNotLoaded",
                                                "team": "vision", "severity": "critical"},
                                               ["vision"]),
    "team namespace from a chart rule": ({"alertname": "KubePodCrashLooping",
                                          "namespace": "vision", "severity": "warning"},
                                         ["vision"]),
    "team label wins over namespace": ({"alertname": "TrainingJobFailed", "namespace": "research",
                                        "team": "vision", "severity": "warning"}, ["vision"]),
    "platform warning": ({"alertname": "LogsDropped", "namespace": "logging",
                          "severity": "warning"}, ["platform-chat"]),
    "platform critical": ({"alertname": "GpuXidErrors", "hostname": "node-a",
                           "severity": "critical"}, ["platform-pager"]),
    "unknown team falls back to the platform": ({"alertname": "GpuPodsPending",
                                                 "namespace": "serving", "team": "serving",
                                                 "severity": "warning"}, ["platform-chat"]),
    "watchdog to the heartbeat": ({"alertname": "Watchdog", "severity": "none"}, ["heartbeat"]),
    "InfoInhibitor nowhere": ({"alertname": "InfoInhibitor", "namespace": "research",
                               "severity": "none"}, ["null"]),
}  # fmt: skip


@needs_amtool
@pytest.mark.parametrize("case", sorted(ROUTES))
def test_amtool_routes_each_alert_to_its_receiver(case: str, overlay_file: Path) -> None:
    labels, receivers = ROUTES[case]
    assert receivers_for(overlay_file, labels) == receivers


@needs_amtool
def test_shipped_prod_routes_teams_to_their_topics(tmp_path: Path) -> None:
    path = tmp_path / "alertmanager.yaml"
    path.write_text(yaml.safe_dump(alert_routing.alertmanager_config(stack_settings("prod"))))
    assert receivers_for(path, {"alertname": "X", "namespace": "research"}) == ["research"]
    assert receivers_for(path, {"alertname": "X", "team": "vision", "severity": "critical"}) == [
        "platform-pager"
    ]
    assert receivers_for(path, {"alertname": "Watchdog"}) == ["heartbeat"]


# ---------------------------------------------------------------------------------------------
# The rules carry what the routes need


def test_every_rule_carries_severity_and_team_unless_it_is_the_platforms() -> None:
    names = {rule["alert"] for group in alerts.rule_groups() for rule in group["rules"]}
    assert names >= alerts.PLATFORM_ALERTS
    for group in alerts.rule_groups():
        for rule in group["rules"]:
            name, labels = rule["alert"], rule["labels"]
            assert labels["severity"] in ("critical", "warning", "info", "none"), name
            if name in alerts.PLATFORM_ALERTS:
                # No team; that no team's namespace survives either is the promtool test below.
                assert "team" not in labels, name
            else:
                assert re.fullmatch(r"\{\{ \$labels\.\w+ \}\}", labels.get("team", "")), name


@needs_promtool
def test_hardware_alerts_lose_the_holders_namespace_and_pod_alerts_name_its_team(
    tmp_path: Path,
) -> None:
    held = {"hostname": "node-a", "gpu": "0", "namespace": "research", "pod": "trainer-0"}
    free = {"hostname": "node-b", "gpu": "0"}
    hot = expected("GpuTooHot", {"hostname": "node-a", "gpu": "0"})
    hot["exp_annotations"]["summary"] = hot["exp_annotations"]["summary"].replace(
        "{{ $value }}", "90"
    )
    assert_rule_tests_pass(
        tmp_path,
        {
            "input_series": [
                series("DCGM_FI_DEV_GPU_TEMP", held, "90x20"),
                series("DCGM_FI_DEV_FB_USED", held, "99x20"),
                series("DCGM_FI_DEV_FB_FREE", held, "1x20"),
                series("DCGM_FI_DEV_FB_USED", free, "99x20"),
                series("DCGM_FI_DEV_FB_FREE", free, "1x20"),
            ],
            "alert_rule_test": [
                {
                    "eval_time": "10m",
                    "alertname": "GpuTooHot",
                    # Labels of the node and GPU only: no namespace to route it to the team.
                    "exp_alerts": [hot],
                },
                {
                    "eval_time": "15m",
                    "alertname": "GpuMemoryNearlyFull",
                    "exp_alerts": [
                        expected("GpuMemoryNearlyFull", held),  # team: research
                        expected("GpuMemoryNearlyFull", free),  # no team: the platform's
                    ],
                },
                {
                    "eval_time": "1m",
                    "alertname": "Watchdog",
                    "exp_alerts": [expected("Watchdog", {})],
                },
            ],
        },
    )
    assert expected("GpuMemoryNearlyFull", held)["exp_labels"]["team"] == "research"
    assert "team" not in expected("GpuMemoryNearlyFull", free)["exp_labels"]

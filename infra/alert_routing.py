"""Alertmanager's configuration, built from `monitoring.alerting`: receivers, routes, inhibitions.

Routes (first match wins, top to bottom):

| alert                                   | goes to                                    |
|-----------------------------------------|--------------------------------------------|
| `alertname=Watchdog`                    | the heartbeat receiver, every 5 minutes    |
| `alertname=InfoInhibitor`               | nowhere (it only silences info alerts)     |
| `team=<t>` of a declared team           | team t's receivers                         |
| `namespace=<t>` (no `team` label)       | team t's receivers                         |
| anything else                           | the platform's receivers                   |

Below each target, `severity=critical` goes to its `pager` receiver (or `notify` when it has
none); warning and info go to `notify`.

Credentials never appear in the configuration: every integration that needs one reads it from a
file (`api_url_file`, `routing_key_file`, `auth_password_file`, the webhook's
`http_config.authorization.credentials_file`) in the Secret CREDENTIALS_SECRET, which the
operator mounts at SECRETS_DIR/<secret>/ (alertmanagerSpec.secrets).  Each of these fields
exists both in Alertmanager v0.34.0, which kube-prometheus-stack 88.5.3 runs, and in v0.25.0,
whose amtool CI checks the configuration with (tests/upstream/alertmanager-config.yaml and
alertmanager-config-amtool.yaml have the lines), and in the operator's types, which parse the
configuration strictly (prometheus-operator-alertmanager.yaml).  The webhook's own `url_file`
is not used: v0.25.0 lacks it.
"""

from __future__ import annotations

from typing import Any

from infra.settings import Settings
from infra.settings.alerting import (
    NULL_RECEIVER,
    AlertingSettings,
    ReceiverSettings,
    RouteTarget,
    credential_fields,
    getattr_path,
)

# The operator mounts each Secret of alertmanagerSpec.secrets at /etc/alertmanager/secrets/<name>
# (prometheus-operator/prometheus-operator@v0.93.0:pkg/alertmanager/statefulset.go L51, L605).
SECRETS_DIR = "/etc/alertmanager/secrets"
# The Secret holding the receivers' credentials, one key per credential.
CREDENTIALS_SECRET = "alertmanager-credentials"
# The Secret holding the configuration, named by alertmanagerSpec.configSecret; the operator
# reads its key `alertmanager.yaml` (@v0.93.0:pkg/alertmanager/statefulset.go L61, L845-851;
# operator.go L861-893).
CONFIG_SECRET = "alertmanager-config"
CONFIG_KEY = "alertmanager.yaml"

WATCHDOG = "Watchdog"
# kube-prometheus-stack's rule that fires while a namespace has info alerts and nothing worse
# (@kube-prometheus-stack-88.5.3:charts/kube-prometheus-stack/templates/prometheus/rules-1.14/
# general.rules.yaml L101-131): it exists only to inhibit info alerts, never to be delivered.
INFO_INHIBITOR = "InfoInhibitor"

# Timings of the alert routes, each with its reason.
GROUP_BY = [
    # One notification per kind of problem and place: a node's four hot GPUs are one message,
    # two teams' failing models are two (they carry the same namespace, `serving`, and their
    # own `team`).
    "alertname",
    "namespace",
    "team",
]
# Wait this long after a group's first alert for the rest of its burst (a node's GPUs, a
# job's workers), so one notification carries them all.
GROUP_WAIT = "30s"
# A group already notified waits this long before telling of alerts added to it or resolved.
GROUP_INTERVAL = "5m"
# An alert still firing is repeated this often: twice in a working day, so it is not forgotten,
# without becoming noise people learn to ignore (the chart's default is 12h).
REPEAT_INTERVAL = "4h"
# The heartbeat: sent at once and every 5 minutes (checked every minute), so a dead man's switch
# set to expect it within ~10 minutes raises its alarm soon after Prometheus or Alertmanager
# stops.
HEARTBEAT_GROUP_INTERVAL = "1m"
HEARTBEAT_REPEAT_INTERVAL = "5m"


def credential_key(receiver: str, path: tuple[str, ...]) -> str:
    """The Secret key of one credential: `<receiver>-<integration>-<field>` in kebab case,
    e.g. `oncall-slack-api-url`."""
    parts = [receiver, *(_kebab(part) for part in path)]
    return "-".join(parts)


def _kebab(name: str) -> str:
    return "".join(f"-{c.lower()}" if c.isupper() else c for c in name)


def credential_files(settings: Settings) -> dict[str, str]:
    """Every credential as `{path below SECRETS_DIR: value}`, e.g.
    `{"alertmanager-credentials/oncall-slack-api-url": "https://hooks.slack.com/..."}`."""
    return {
        f"{CREDENTIALS_SECRET}/{key}": value
        for key, value in credentials(settings.monitoring.alerting).items()
    }


def credentials(alerting: AlertingSettings) -> dict[str, str]:
    """The credentials Secret's data: `{key: value}` of every credential the stack sets."""
    result: dict[str, str] = {}
    for name, receiver in alerting.receivers.items():
        for _, path in credential_fields(receiver):
            value = getattr_path(receiver, path)
            if value is not None:
                result[credential_key(name, path)] = value
    return result


def alertmanager_config(settings: Settings, *, secrets_dir: str = SECRETS_DIR) -> dict[str, Any]:
    """Alertmanager's configuration file as data; credentials are read from files below
    `secrets_dir` (where `credential_files` says)."""
    alerting = settings.monitoring.alerting
    platform = alerting.platform or RouteTarget(notify=NULL_RECEIVER)
    routes: list[dict[str, Any]] = [
        {
            "receiver": alerting.heartbeat or NULL_RECEIVER,
            "matchers": [f'alertname="{WATCHDOG}"'],
            "group_by": ["alertname"],
            "group_wait": "0s",
            "group_interval": HEARTBEAT_GROUP_INTERVAL,
            "repeat_interval": HEARTBEAT_REPEAT_INTERVAL,
        },
        {"receiver": NULL_RECEIVER, "matchers": [f'alertname="{INFO_INHIBITOR}"']},
    ]
    targets = [(team.name, team.alerts or platform) for team in settings.teams]
    # By the alert's own `team` label first: serving alerts carry it in namespace `serving`.
    routes += [_target_route(target, [f'team="{team}"']) for team, target in targets]
    # Then by namespace, for alerts without a team label (the chart's rules about pods, PVCs).
    routes += [
        _target_route(target, [f'namespace="{team}"', 'team=""']) for team, target in targets
    ]
    # Platform criticals: the last child, so every team route is tried first.
    routes += _target_route(platform, []).get("routes", [])
    root = {
        "receiver": platform.notify,
        "group_by": GROUP_BY,
        "group_wait": GROUP_WAIT,
        "group_interval": GROUP_INTERVAL,
        "repeat_interval": REPEAT_INTERVAL,
        "routes": routes,
    }
    return {
        "global": {"resolve_timeout": "5m"},
        "route": root,
        "inhibit_rules": inhibit_rules(),
        "receivers": [
            {"name": NULL_RECEIVER},
            *(
                _receiver(name, receiver, secrets_dir)
                for name, receiver in sorted(alerting.receivers.items())
            ),
        ],
    }


def _target_route(target: RouteTarget, matchers: list[str]) -> dict[str, Any]:
    route: dict[str, Any] = {"receiver": target.notify, "matchers": matchers}
    if target.pager and target.pager != target.notify:
        route["routes"] = [{"receiver": target.pager, "matchers": ['severity="critical"']}]
    return route


def inhibit_rules() -> list[dict[str, Any]]:
    """kube-prometheus-stack 88.5.3's own inhibitions (values.yaml L556-578): a critical alert
    silences the same alert's warning and info in its namespace, a warning its info, and
    InfoInhibitor the info alerts of a namespace with nothing worse.  The chart's fourth rule
    (any alert inhibits InfoInhibitor) is left out: InfoInhibitor is routed to `null` instead."""
    same = ["alertname", "namespace"]
    return [
        {
            "source_matchers": ['severity="critical"'],
            "target_matchers": ['severity=~"warning|info"'],
            "equal": list(same),
        },
        {
            "source_matchers": ['severity="warning"'],
            "target_matchers": ['severity="info"'],
            "equal": list(same),
        },
        {
            "source_matchers": [f'alertname="{INFO_INHIBITOR}"'],
            "target_matchers": ['severity="info"'],
            "equal": ["namespace"],
        },
    ]


def _receiver(name: str, receiver: ReceiverSettings, secrets_dir: str) -> dict[str, Any]:
    def file(*path: str) -> str:
        return f"{secrets_dir}/{CREDENTIALS_SECRET}/{credential_key(name, path)}"

    result: dict[str, Any] = {"name": name}
    if receiver.slack:
        slack: dict[str, Any] = {"api_url_file": file("slack", "apiUrl"), "send_resolved": True}
        if receiver.slack.channel:
            slack["channel"] = receiver.slack.channel
        result["slack_configs"] = [slack]
    if receiver.pagerduty:
        result["pagerduty_configs"] = [{"routing_key_file": file("pagerduty", "routingKey")}]
    if receiver.email:
        email = receiver.email
        mail: dict[str, Any] = {
            "to": email.to,
            "from": email.sender,
            "smarthost": email.smarthost,
            "send_resolved": True,
        }
        if email.auth_username:
            mail["auth_username"] = email.auth_username
            mail["auth_password_file"] = file("email", "authPassword")
        result["email_configs"] = [mail]
    if receiver.webhook:
        hook: dict[str, Any] = {"url": receiver.webhook.url}
        if receiver.webhook.bearer_token:
            # Bearer is the type's default (prometheus/common's Authorization).
            hook["http_config"] = {
                "authorization": {"credentials_file": file("webhook", "bearerToken")}
            }
        result["webhook_configs"] = [hook]
    if receiver.sns:
        result["sns_configs"] = [
            {
                "topic_arn": receiver.sns.topic_arn,
                # The SDK client is built for this region (notify/sns/sns.go L162-216 at
                # v0.34.0); the topic's own, so no region has to be configured elsewhere.
                "sigv4": {"region": receiver.sns.region},
                "send_resolved": True,
            }
        ]
    return result


def sns_kms_keys(settings: Settings) -> list[str]:
    """The KMS keys of the SNS topics that are encrypted with a customer-managed key."""
    receivers = settings.monitoring.alerting.receivers.values()
    return sorted({r.sns.kms_key_arn for r in receivers if r.sns and r.sns.kms_key_arn})


def sns_topics(settings: Settings) -> list[str]:
    """The SNS topic ARNs receivers publish to (what Alertmanager's role may publish to)."""
    return sorted(
        {r.sns.topic_arn for r in settings.monitoring.alerting.receivers.values() if r.sns}
    )

"""Where alerts go: Alertmanager's receivers and which of them gets whose alerts.

`monitoring.alerting` names receivers (Slack, PagerDuty, e-mail, a webhook, Amazon SNS) and
points the platform's alerts, the Watchdog heartbeat and each team's alerts (`teams[].alerts`) at
them.  Every route target has a `notify` receiver and an optional `pager`: critical alerts go to
the pager (or to `notify` when there is none), warnings and info never page.

Credentials (a Slack webhook URL, a PagerDuty routing key, an SMTP password, a webhook's bearer
token) must be Pulumi secrets: `pulumi config set --secret --path '<key>' <value>`.  The fields
that hold them say so in their schema (`SECRET_EXTRA`), which the harness reads to give test
stacks placeholders of the right shape, and `credential_paths` lists the ones a stack sets.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import Field, model_validator

from infra.settings.base import ConfigProblem, SettingsModel

# The receiver that discards: Alertmanager's config needs one for alerts nobody should hear of
# (InfoInhibitor) and stands in for targets a stack does not set.
NULL_RECEIVER = "null"

# Receiver names become Secret keys and file names (`<receiver>-slack-api-url`): a DNS label.
_RECEIVER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# arn:<partition>:sns:<region>:<account>:<topic> (a FIFO topic ends in .fifo).
SNS_TOPIC_ARN = re.compile(
    r"^arn:(?P<partition>aws(-[a-z]+)*):sns:(?P<region>[a-z]{2}(-[a-z]+)+-\d):(?P<account>\d{12}):"
    r"(?P<topic>[A-Za-z0-9_-]{1,256}(\.fifo)?)$"
)
# arn:<partition>:kms:<region>:<account>:key/<key id>: IAM grants key use on the key's own ARN,
# not on an alias.
KMS_KEY_ARN = re.compile(
    r"^arn:aws(-[a-z]+)*:kms:(?P<region>[a-z]{2}(-[a-z]+)+-\d):\d{12}:key/(mrk-)?[0-9a-f-]{32,36}$"
)
_SMARTHOST = re.compile(r"^[^\s:/]+:\d{1,5}$")
_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")


def secret_extra(placeholder: str) -> dict[str, Any]:
    """Schema marks of a credential field: it must be a Pulumi secret, and what a stand-in value
    looks like (`{token}` is filled with a token unique to the key)."""
    return {"secret": True, "secretPlaceholder": placeholder}


def _secret(description: str, placeholder: str) -> Any:
    return Field(
        default=None,
        min_length=1,
        description=f"{description} A Pulumi secret: set it with `pulumi config set --secret "
        "--path`.",
        json_schema_extra=secret_extra(placeholder),
    )


class SlackReceiver(SettingsModel):
    api_url: str | None = _secret(
        "The Slack incoming-webhook URL (https://hooks.slack.com/services/...).",
        "https://hooks.slack.com/services/T00000000/B00000000/{token}",
    )
    channel: str | None = Field(
        default=None,
        min_length=1,
        description="Channel to post to, e.g. #ml-alerts (default: the webhook's own channel).",
    )

    @model_validator(mode="after")
    def _check(self) -> SlackReceiver:
        if self.api_url is not None and not self.api_url.startswith("https://"):
            raise ConfigProblem(("apiUrl",), "a Slack webhook URL starts with https://")
        return self


class PagerDutyReceiver(SettingsModel):
    routing_key: str | None = _secret(
        "The integration key of a PagerDuty service's Events API v2 integration.", "{token}"
    )

    @model_validator(mode="after")
    def _check(self) -> PagerDutyReceiver:
        if self.routing_key is not None and re.search(r"\s", self.routing_key):
            raise ConfigProblem(("routingKey",), "a PagerDuty routing key has no white space")
        return self


class EmailReceiver(SettingsModel):
    to: str = Field(description="Address(es) to send to, comma-separated.")
    sender: str = Field(alias="from", description="The sender address.")
    smarthost: str = Field(description="SMTP server as host:port, e.g. email-smtp.us-east-1."
                           "amazonaws.com:587.")  # fmt: skip
    auth_username: str | None = Field(
        default=None, min_length=1, description="SMTP user name (with `authPassword`)."
    )
    auth_password: str | None = _secret("The SMTP password (with `authUsername`).", "{token}")

    @model_validator(mode="after")
    def _check(self) -> EmailReceiver:
        for key, value in (("to", self.to), ("from", self.sender)):
            for address in value.split(","):
                if not _EMAIL.match(address.strip()):
                    raise ConfigProblem(
                        (key,), f"{address.strip()!r} is not an e-mail address (name@example.com)"
                    )
        if not _SMARTHOST.match(self.smarthost):
            raise ConfigProblem(
                ("smarthost",), f"{self.smarthost!r} is not host:port, e.g. smtp.example.com:587"
            )
        if (self.auth_username is None) != (self.auth_password is None):
            given, missing = (
                ("authUsername", "authPassword")
                if self.auth_username
                else ("authPassword", "authUsername")
            )
            raise ConfigProblem((missing,), f"`{given}` needs `{missing}` too (SMTP AUTH)")
        return self


class WebhookReceiver(SettingsModel):
    url: str = Field(
        description="URL Alertmanager POSTs alerts to (plain text in the stack: no credential in "
        "it; put a token in `bearerToken`)."
    )
    bearer_token: str | None = _secret(
        "Sent as `Authorization: Bearer <token>` with every request.", "{token}"
    )

    @model_validator(mode="after")
    def _check(self) -> WebhookReceiver:
        match = re.match(r"^(https?)://([^/?#]*)([^?#]*)(\?[^#]*)?", self.url)
        if not match:
            raise ConfigProblem(("url",), f"{self.url!r} is not an http:// or https:// URL")
        if "@" in match[2] or match[4]:
            raise ConfigProblem(
                ("url",),
                "the URL would be stored and rendered in plain text, and user info or a query "
                "string usually carries a credential; give the URL without it and the token as "
                "`bearerToken` (a Pulumi secret)",
            )
        return self


class SnsReceiver(SettingsModel):
    topic_arn: str = Field(
        description="ARN of the SNS topic to publish to (Alertmanager publishes with its own IAM "
        "role, allowed sns:Publish on the stack's topics only; AWS stacks).  A topic in another "
        "AWS account must also allow that role sns:Publish in its topic policy: this program "
        "cannot change another account's topic."
    )
    kms_key_arn: str | None = Field(
        default=None,
        description="ARN of the customer-managed KMS key the topic is encrypted with (SSE), if "
        "any: Alertmanager's role is then also allowed kms:GenerateDataKey* and kms:Decrypt on "
        "that key, which publishing to an encrypted topic needs.  The key's own policy must let "
        "IAM policies of its account grant this (the default key policy does), or name the role "
        "itself when the key is in another account.  Leave unset for unencrypted topics and for "
        "the AWS-managed key alias/aws/sns.",
    )

    @model_validator(mode="after")
    def _check(self) -> SnsReceiver:
        if not SNS_TOPIC_ARN.match(self.topic_arn):
            raise ConfigProblem(
                ("topicArn",),
                f"{self.topic_arn!r} is not an SNS topic ARN "
                "(arn:aws:sns:<region>:<account>:<topic>)",
            )
        if self.kms_key_arn is not None and not KMS_KEY_ARN.match(self.kms_key_arn):
            raise ConfigProblem(
                ("kmsKeyArn",),
                f"{self.kms_key_arn!r} is not a KMS key ARN: give the key's own ARN "
                "(arn:aws:kms:<region>:<account>:key/<key id>, not an alias or a bare key id), "
                "as `aws sns get-topic-attributes` names its KmsMasterKeyId",
            )
        key = KMS_KEY_ARN.match(self.kms_key_arn or "")
        if key and key["region"] != self.region:
            raise ConfigProblem(
                ("kmsKeyArn",),
                f"the key is in {key['region']} but the topic in {self.region}: an SNS topic is "
                "encrypted with a key of its own region; give that key's ARN",
            )
        return self

    @property
    def region(self) -> str:
        match = SNS_TOPIC_ARN.match(self.topic_arn)
        assert match is not None
        return match["region"]


class ReceiverSettings(SettingsModel):
    """One named receiver: any of its integrations, each notified of every alert it gets."""

    slack: SlackReceiver | None = Field(default=None, description="Post to a Slack channel.")
    pagerduty: PagerDutyReceiver | None = Field(
        default=None, description="Open PagerDuty incidents (Events API v2)."
    )
    email: EmailReceiver | None = Field(default=None, description="Send e-mail over SMTP.")
    webhook: WebhookReceiver | None = Field(
        default=None, description="POST Alertmanager's webhook JSON to a URL."
    )
    sns: SnsReceiver | None = Field(default=None, description="Publish to an Amazon SNS topic.")

    @model_validator(mode="after")
    def _check(self) -> ReceiverSettings:
        if not any(getattr(self, name) for name in INTEGRATIONS):
            raise ConfigProblem(
                (),
                f"a receiver needs at least one of {', '.join(INTEGRATIONS)}; remove it or give "
                "one",
            )
        return self


# Integration keys of a receiver, in the order they are rendered.
INTEGRATIONS = ("slack", "pagerduty", "email", "webhook", "sns")


class RouteTarget(SettingsModel):
    """Who hears of a set of alerts: `notify` gets warnings and info, `pager` gets criticals."""

    notify: str = Field(description="Receiver of warning and info alerts (and critical ones "
                        "when there is no `pager`).")  # fmt: skip
    pager: str | None = Field(default=None, description="Receiver of critical alerts.")

    def receivers(self) -> list[tuple[str, str]]:
        """(key, receiver name) of each receiver named."""
        return [("notify", self.notify), *([("pager", self.pager)] if self.pager else [])]


class AlertingSettings(SettingsModel):
    receivers: dict[str, ReceiverSettings] = Field(
        default_factory=dict,
        description="Named receivers (names: lower-case letters, digits and '-').",
    )
    platform: RouteTarget | None = Field(
        default=None,
        description="Who gets alerts that concern no team (nodes, GPUs, logging, Prometheus "
        "itself) and those of teams without `alerts`. Required when receivers are declared; "
        "without it alerts are kept in Alertmanager and delivered nowhere.",
    )
    heartbeat: str | None = Field(
        default=None,
        description="Receiver of the Watchdog alert, which always fires: a dead man's switch "
        "service that raises an alarm when it stops arriving (every 5 minutes).",
    )

    @model_validator(mode="after")
    def _check(self) -> AlertingSettings:
        for name in self.receivers:
            if name == NULL_RECEIVER or not _RECEIVER_NAME.match(name) or len(name) > 63:
                raise ConfigProblem(
                    ("receivers", name),
                    f"{name!r} cannot name a receiver: use lower-case letters, digits and '-' "
                    f"(at most 63, not {NULL_RECEIVER!r})",
                )
        if self.receivers and self.platform is None:
            raise ConfigProblem(
                ("platform",),
                "receivers are declared but none gets the platform's alerts: set "
                "`platform: {notify: <receiver>}`",
            )
        if self.platform:
            for key, name in self.platform.receivers():
                self.check_receiver(name, ("platform", key))
        if self.heartbeat:
            self.check_receiver(self.heartbeat, ("heartbeat",))
        for name, receiver in self.receivers.items():
            for key, path in credential_fields(receiver):
                if getattr_path(receiver, path) is None and path not in OPTIONAL_CREDENTIALS:
                    full = ".".join(("monitoring", "alerting", "receivers", name, *path))
                    raise ConfigProblem(
                        ("receivers", name, *path),
                        f"{key} is missing; set it as a secret: pulumi config set --secret "
                        f"--path '{full}' <value>",
                    )
        return self

    def check_receiver(self, name: str, where: tuple[str | int, ...]) -> None:
        """Raise ConfigProblem at `where` unless `name` is a declared receiver."""
        if name not in self.receivers:
            known = ", ".join(sorted(self.receivers)) or "none declared"
            raise ConfigProblem(
                where,
                f"no receiver {name!r} in monitoring.alerting.receivers (receivers: {known})",
            )

    def check_usage(self, team_targets: list[RouteTarget | None]) -> None:
        """Refuse a receiver no route uses, and a heartbeat receiver that also gets alerts;
        `team_targets`: each team's `alerts`."""
        used = {name for target in team_targets if target for _, name in target.receivers()}
        if self.platform:
            used |= {name for _, name in self.platform.receivers()}
        if self.heartbeat and self.heartbeat in used:
            raise ConfigProblem(
                ("heartbeat",),
                f"{self.heartbeat!r} also gets alerts; the Watchdog fires every 5 minutes for "
                "ever, so give the heartbeat a receiver of its own (a dead man's switch)",
            )
        for name in self.receivers:
            if name not in used and name != self.heartbeat:
                raise ConfigProblem(
                    ("receivers", name),
                    "no route uses this receiver: name it in `platform`, `heartbeat` or a team's "
                    "`alerts`, or remove it",
                )


def credential_fields(model: SettingsModel) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(key as written, path below `model`) of every credential field its integrations have."""
    for name in INTEGRATIONS:
        integration = getattr(model, name, None)
        if integration is None:
            continue
        for field_name, info in type(integration).model_fields.items():
            extra = info.json_schema_extra
            if isinstance(extra, dict) and extra.get("secret"):
                alias = info.alias or field_name
                yield alias, (name, alias)


def getattr_path(model: Any, path: tuple[str, ...]) -> Any:
    """The value at an alias path below a settings model."""
    value = model
    for part in path:
        field_name = next(
            n for n, info in type(value).model_fields.items() if part in (n, info.alias)
        )
        value = getattr(value, field_name)
    return value


# Credentials whose absence is a choice: SMTP without AUTH, a webhook without a token.
OPTIONAL_CREDENTIALS = frozenset({("email", "authPassword"), ("webhook", "bearerToken")})


def credential_paths(alerting: AlertingSettings) -> list[str]:
    """`pulumi config set --path` keys of every credential the stack sets, e.g.
    `monitoring.alerting.receivers.oncall.slack.apiUrl`."""
    return [
        ".".join(("monitoring", "alerting", "receivers", name, *path))
        for name, receiver in alerting.receivers.items()
        for _, path in credential_fields(receiver)
        if getattr_path(receiver, path) is not None
    ]


TeamAlerts = Annotated[
    RouteTarget | None,
    Field(
        default=None,
        description="Receivers of the team's alerts (`team` label or the team's namespace): "
        "{notify, pager}. Default: the platform's (`monitoring.alerting.platform`).",
    ),
]

__all__ = [
    "INTEGRATIONS",
    "NULL_RECEIVER",
    "AlertingSettings",
    "ReceiverSettings",
    "RouteTarget",
    "TeamAlerts",
    "credential_paths",
]

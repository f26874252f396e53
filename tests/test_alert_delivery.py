"""Alerts travel end to end: the inference API fails, Prometheus fires the platform's own rule,
Alertmanager routes it with the configuration the program builds, and the owning team's
receiver gets it.

Two teams each serve a model through a real inference API (tests/servers.py): `research`'s
model version has a batch-of-one export bug (tests/faulty_model.py), so its API answers 500 to
every prediction of two images or more; `vision`'s model is sound, but its clients send mostly
bad requests, which get 4xx.  Debian's Prometheus (2.42) scrapes both with the target labels
their ServiceMonitors give them in the cluster and evaluates `infra/alerts.py`'s rule groups;
Debian's Alertmanager (0.25) runs `infra/alert_routing.alertmanager_config()` for a stack whose
receivers are webhooks to a sink in the test, one path per receiver, with their bearer tokens in
credential files where the configuration reads them.

Time runs 60 times faster, and only through what says so (tests/alert_pipeline.py):
`time_compressed` divides every rule's `for` and every range window and offset in its
expression (InferenceApiErrorRate's `for: 10m` over `rate(...[5m])` becomes `for: 10s` over
`rate(...[5s])`, fed by a 1-second scrape and evaluated every second);
`route_timers_compressed` divides Alertmanager's `group_wait`, `group_interval` and
`repeat_interval`; `prometheus()` divides Prometheus's alert resend delay (1m), without which an
alert that fires before Prometheus has found Alertmanager, as the Watchdog does, waits a minute.
Thresholds, label matchers, routes and receivers are the program's own, unchanged; both
functions assert that they changed nothing else.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from harness.program import stack_config, stack_settings
from infra import alerts
from infra.alert_routing import alertmanager_config, credential_files
from infra.settings import Settings
from tests.alert_pipeline import (
    Process,
    WebhookSink,
    alertmanager,
    inference_target,
    needs_alert_pipeline,
    poll,
    prometheus,
    prometheus_config,
    route_timers_compressed,
    time_compressed,
)
from tests.faulty_model import export_batch_of_one
from tests.promtool import needs_promtool
from tests.promtool import run as promtool_run
from tests.servers import Running

FACTOR = 60
INTERVAL = "1s"
# Generous: every step takes seconds; a slow, shared CI machine may take several times that.
WITHIN = 90.0
# team -> its served model; each team's alerts go to the receiver named after it.
MODELS = {"research": "mnist", "vision": "digits"}
RECEIVERS = ("platform", "research", "vision", "heartbeat")
ERROR_RATE = "InferenceApiErrorRate"


def _settings(sink: WebhookSink) -> Settings:
    """The `local` stack with two teams, each serving a model and routing its alerts to a
    receiver of its own, and every receiver a webhook (with a bearer token) to `sink`."""
    config = stack_config("local")
    [research] = config["ml-platform:teams"]
    config["ml-platform:teams"] = [
        {**research, "alerts": {"notify": "research"}},
        {"name": "vision", "quota": {"gpus": 0, "cpu": "4", "memory": "8Gi"},
         "alerts": {"notify": "vision"}},
    ]  # fmt: skip
    config["ml-platform:serving"] = {
        "inferenceImage": "registry.example.com/ml/inference:1.0.0",
        "models": [{"name": model, "team": team} for team, model in MODELS.items()],
    }
    config["ml-platform:monitoring"] = {
        "alerting": {
            "receivers": {
                name: {"webhook": {"url": sink.url(f"/{name}"), "bearerToken": f"token-{name}"}}
                for name in RECEIVERS
            },
            "platform": {"notify": "platform"},
            "heartbeat": "heartbeat",
        }
    }
    return stack_settings("local", config)


class Traffic:
    """Clients of both APIs, in a thread until the context ends: research's get a 500 for
    every other prediction (two images: its model fails), vision's get a 200 for one in three
    (the rest are out-of-range pixels, 400, and an unknown model, 404).  `statuses` counts
    what each API answered."""

    def __init__(self, research: Running, vision: Running, image: np.ndarray) -> None:
        one = {"instances": [image.tolist()]}
        two = {"instances": [image.tolist()] * 2}
        unscaled = {"instances": [(image * 255).tolist()]}
        research_path = f"/v1/models/{MODELS['research']}:predict"
        vision_path = f"/v1/models/{MODELS['vision']}:predict"
        self.requests = [
            (research, research_path, one),
            (research, research_path, two),
            (vision, vision_path, one),
            (vision, vision_path, unscaled),
            (vision, "/v1/models/unknown:predict", one),
        ]
        self.names = {id(research): "research", id(vision): "vision"}
        self.statuses: Counter[tuple[str, int]] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        clients = {
            id(api): httpx.Client(base_url=str(api.client.base_url), timeout=30)
            for api, _, _ in self.requests
        }
        try:
            while not self._stop.wait(0.05):
                for api, path, body in self.requests:
                    response = clients[id(api)].post(path, json=body)
                    self.statuses[(self.names[id(api)], response.status_code)] += 1
        finally:
            for client in clients.values():
                client.close()

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _report(sink: WebhookSink, prom: Process, am: Process, traffic: Traffic) -> str:
    """Everything that says where an alert stopped: Prometheus's and Alertmanager's alerts,
    what the sink got, what the APIs answered, and both processes' logs."""
    parts = []
    for process, path in ((prom, "/api/v1/alerts"), (am, "/api/v2/alerts")):
        try:
            parts.append(f"{process.name} {path}:\n{json.dumps(process.get(path), indent=1)}")
        except httpx.HTTPError as problem:
            parts.append(f"{process.name} {path}: {problem}")
    received = [(note.path, note.body) for note in sink.received()]
    parts.append(f"webhook sink received:\n{json.dumps(received, indent=1)}")
    parts.append(f"API answers (team, status): {dict(traffic.statuses)}")
    parts += [f"--- {process.name} log:\n{process.log()}" for process in (prom, am)]
    return "\n\n".join(parts)


@contextlib.contextmanager
def _pipeline(
    tmp_path: Path, vision_base: Path
) -> Iterator[tuple[WebhookSink, Process, Process, list[Running], Settings]]:
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(WebhookSink())
        settings = _settings(sink)
        # Credential files where the configuration reads them: alertmanager_config takes the
        # directory the operator mounts the Secret at as an argument; here it is a temp dir.
        secrets = tmp_path / "secrets"
        for relative, value in credential_files(settings).items():
            (secrets / relative).parent.mkdir(parents=True, exist_ok=True)
            (secrets / relative).write_text(value)
        config = alertmanager_config(settings, secrets_dir=str(secrets))
        am = stack.enter_context(
            alertmanager(tmp_path / "alertmanager", route_timers_compressed(config, FACTOR))
        )
        research_base = tmp_path / "research-models"
        export_batch_of_one(research_base)
        apis = [
            stack.enter_context(Running(research_base, MODELS["research"], poll_seconds=600)),
            stack.enter_context(Running(vision_base, MODELS["vision"], poll_seconds=600)),
        ]
        served = {model.team: model for model in settings.serving.models}
        targets = [
            inference_target(settings, served[team], api.client.base_url.netloc.decode())
            for team, api in zip(MODELS, apis, strict=True)
        ]
        rules = tmp_path / "rules.yml"
        groups = time_compressed(alerts.rule_groups(), FACTOR)
        rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
        am_address = am.url.removeprefix("http://")
        prom = stack.enter_context(
            prometheus(
                tmp_path / "prometheus",
                prometheus_config(targets, am_address, rules, INTERVAL),
                FACTOR,
            )
        )
        yield sink, prom, am, apis, settings


@needs_alert_pipeline
def test_inference_errors_reach_the_owning_teams_receiver_and_only_it(
    tmp_path: Path, base: Path, exported: tuple[Path, np.ndarray, Path]
) -> None:
    _, images, _ = exported
    with (
        _pipeline(tmp_path, base) as (sink, prom, am, (research, vision), _),
        Traffic(research, vision, images[0]) as traffic,
    ):

        def diagnose() -> str:
            return _report(sink, prom, am, traffic)

        # Prometheus 2.42 loaded every rule of ours and evaluates each without error.
        total = sum(len(group["rules"]) for group in alerts.rule_groups())

        def rules_healthy() -> bool:
            groups = prom.get("/api/v1/rules")["data"]["groups"]
            states = [rule["health"] for group in groups for rule in group["rules"]]
            return len(states) == total and all(state == "ok" for state in states)

        poll(rules_healthy, within=WITHIN, what="rules not all loaded and ok", diagnose=diagnose)

        # The owning team's receiver gets the alert, with its team, through its credential.
        def delivered() -> list[dict[str, Any]]:
            return sink.alerts("/research", ERROR_RATE)

        [alert, *_] = poll(
            delivered, within=WITHIN, what=f"{ERROR_RATE} never reached research", diagnose=diagnose
        )
        assert alert["status"] == "firing"
        assert alert["receiver"] == "research"
        assert alert["authorization"] == "Bearer token-research"
        labels = alert["labels"]
        assert labels["team"] == "research"
        assert labels["service"] == f"inference-{MODELS['research']}"
        assert labels["severity"] == "critical"

        # The heartbeat receiver gets the Watchdog.
        [heartbeat, *_] = poll(
            lambda: sink.alerts("/heartbeat", "Watchdog"),
            within=WITHIN,
            what="Watchdog never reached the heartbeat receiver",
            diagnose=diagnose,
        )
        assert heartbeat["receiver"] == "heartbeat"
        assert heartbeat["authorization"] == "Bearer token-heartbeat"

        # vision's 4xx were scraped, yet its error rate never even went pending: 4xx is the
        # client's failure, not the server's.
        scraped = prom.get(
            "/api/v1/query",
            query=f'sum(inference_requests_total{{service="inference-{MODELS["vision"]}",'
            'status=~"4.."})',
        )["data"]["result"]
        assert scraped, diagnose()
        assert float(scraped[0]["value"][1]) > 0, diagnose()
        assert traffic.statuses[("vision", 400)]
        assert traffic.statuses[("vision", 404)]
        assert not [s for (team, s) in traffic.statuses if team == "vision" and s >= 500]
        in_prometheus = [
            a["labels"] for a in prom.get("/api/v1/alerts")["data"]["alerts"]
            if a["labels"]["alertname"] == ERROR_RATE
        ]  # fmt: skip
        assert [a["team"] for a in in_prometheus] == ["research"], diagnose()

        # Alertmanager routed the alert to research's receiver alone ...
        routed = am.get("/api/v2/alerts", filter=f'alertname="{ERROR_RATE}"')
        assert [[r["name"] for r in a["receivers"]] for a in routed] == [["research"]], diagnose()
        # ... and neither the other team nor the platform heard of it.
        for other in ("/vision", "/platform"):
            assert not sink.alerts(other, ERROR_RATE), diagnose()


def _rule(groups: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [rule] = [r for g in groups for r in g["rules"] if r.get("alert") == name]
    return dict(rule)


def test_time_compression_divides_the_rules_durations_and_nothing_else() -> None:
    original = alerts.rule_groups()
    assert time_compressed(original, 1) == original
    fast = time_compressed(original, FACTOR)
    error_rate, fast_error_rate = _rule(original, ERROR_RATE), _rule(fast, ERROR_RATE)
    assert (error_rate["for"], fast_error_rate["for"]) == ("10m", "10s")
    assert fast_error_rate["expr"] == error_rate["expr"].replace("[5m]", "[5s]")
    assert fast_error_rate["expr"].count("[5s]") == 2
    xid, fast_xid = _rule(original, "GpuXidErrors"), _rule(fast, "GpuXidErrors")
    assert fast_xid["expr"] == xid["expr"].replace("[1h] offset 10m", "[1m] offset 10s")
    assert fast_xid["for"] == xid["for"] == "0m"
    for slow, quick in zip(
        (r for g in original for r in g["rules"]),
        (r for g in fast for r in g["rules"]),
        strict=True,
    ):
        assert {k: v for k, v in quick.items() if k not in ("expr", "for")} == {
            k: v for k, v in slow.items() if k not in ("expr", "for")
        }


def test_time_compression_leaves_strings_alone_and_refuses_what_it_cannot_read() -> None:
    group: dict[str, Any] = {
        "name": "g",
        "rules": [
            {
                "alert": "A",
                "expr": 'max_over_time(rate(x{p=~"[a-z]+ offset 5m"}[30m])[1h:1m]) offset 2h > 1',
                "for": "1h30m",
                "labels": {"severity": "info"},
            }
        ],
    }
    [fast] = time_compressed([group], FACTOR)[0]["rules"]
    assert fast["expr"] == 'max_over_time(rate(x{p=~"[a-z]+ offset 5m"}[30s])[1m:1s]) offset 2m > 1'
    assert fast["for"] == "1m30s"
    unknown = {**group, "rules": [{**group["rules"][0], "expr": "rate(x[5 m])"}]}
    with pytest.raises(AssertionError, match="unrecognised"):
        time_compressed([unknown], FACTOR)


def test_route_timer_compression_divides_every_routes_timers_and_nothing_else() -> None:
    config: dict[str, Any] = {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "a",
            "group_by": ["alertname"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [{"receiver": "b", "matchers": ['x="1"'], "repeat_interval": "5m"}],
        },
        "receivers": [{"name": "a"}, {"name": "b"}],
    }
    fast = route_timers_compressed(config, FACTOR)
    assert fast["route"] == {
        **config["route"],
        "group_wait": "500ms",
        "group_interval": "5s",
        "repeat_interval": "4m",
        "routes": [{"receiver": "b", "matchers": ['x="1"'], "repeat_interval": "5s"}],
    }
    assert fast["global"] == config["global"]
    assert fast["receivers"] == config["receivers"]


@needs_promtool
def test_time_compressed_rules_pass_promtool_check(tmp_path: Path) -> None:
    path = tmp_path / "fast.yml"
    path.write_text(
        yaml.safe_dump({"groups": time_compressed(alerts.rule_groups(), FACTOR)}, sort_keys=False)
    )
    result = promtool_run("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    total = sum(len(group) for group in alerts.GROUPS.values())
    assert f"SUCCESS: {total} rules found" in result.stdout

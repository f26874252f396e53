"""The platform's alerting path on loopback, for end-to-end tests.

Real processes, each on 127.0.0.1 with a free port and a temporary directory, each stopped when
its context ends: Debian's `prometheus` (2.42) running the platform's own rule files against
scraped targets, Debian's `prometheus-alertmanager` (0.25), and a webhook sink recording every
notification Alertmanager posts.  The inference APIs themselves run in-process
(`tests/servers.py` `Running`).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from infra import versions
from infra.settings import Settings
from infra.settings.serving import ServedModelSettings
from tests.programs import ALERTMANAGER, PROMETHEUS, needs
from tests.upstream_facts import facts
from workloads import serving

needs_alert_pipeline = needs("prometheus", "alertmanager")

T = TypeVar("T")
LOCALHOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
    return port


def poll(
    check: Callable[[], T | None], *, within: float, what: str, diagnose: Callable[[], str]
) -> T:
    """The first truthy result of `check`, tried until `within` seconds have passed; otherwise
    fail with `what` and whatever `diagnose` says about the state of things."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what} (waited {within:g} s)\n{diagnose()}")
        time.sleep(0.25)


# --- Rules, run fast ---------------------------------------------------------------------------

# A duration as PromQL and the rule file's `for` spell it: units from years down to milliseconds,
# largest first (prometheus/prometheus@v2.42.0:promql/parser/lex.go L686-696, L722-742 lex it;
# parse.go L634-643 reads it with prometheus/common v0.39.0's model.ParseDuration and refuses 0).
_UNITS_MS = {"y": 365 * 86_400_000, "w": 7 * 86_400_000, "d": 86_400_000, "h": 3_600_000,
             "m": 60_000, "s": 1000, "ms": 1}  # fmt: skip
_DURATION = r"(?:\d+(?:ms|[ywdhms]))+"
_STRING = r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|`[^`]*`"
_RANGE = re.compile(rf"\[({_DURATION})(:{_DURATION}?)?\]")
_OFFSET = re.compile(rf"\boffset(\s+)(-?)({_DURATION})\b")


def _milliseconds(duration: str) -> int:
    parts = re.findall(r"(\d+)(ms|[ywdhms])", duration)
    assert "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(int(n) * _UNITS_MS[u] for n, u in parts)


def _scaled(duration: str, factor: int) -> str:
    """`duration` divided by `factor`, spelled as Prometheus spells durations (largest units
    first); a duration the division leaves as it was keeps its own spelling (`0m`)."""
    total = _milliseconds(duration)
    assert total % factor == 0, f"{duration} is not a whole number of ms once divided by {factor}"
    scaled = total // factor
    if scaled == total:
        return duration
    spelled = ""
    for unit, size in _UNITS_MS.items():
        count, scaled = divmod(scaled, size)
        if count:
            spelled += f"{count}{unit}"
    return spelled or "0s"


def _scale_expr(expr: str, factor: int) -> tuple[str, int]:
    """`expr` with every range window, subquery step and offset divided by `factor`, and how
    many it changed; string literals (label values, regexes) are left alone."""
    pieces = re.split(f"({_STRING})", expr)
    count = 0
    for index in range(0, len(pieces), 2):  # odd indices are the string literals
        code = pieces[index]
        ranges = _RANGE.findall(code)
        offsets = _OFFSET.findall(code)
        # Every `[` outside a string opens a range or a subquery, and each was matched whole.
        assert code.count("[") == len(ranges), f"unrecognised [ in {code!r}"
        assert len(re.findall(r"\boffset\b", code)) == len(offsets), f"offset in {code!r}"

        def window(match: re.Match[str]) -> str:
            step = match[2] or ""  # a subquery's `:step`, or `:` for the default step
            if len(step) > 1:
                step = f":{_scaled(step[1:], factor)}"
            return f"[{_scaled(match[1], factor)}{step}]"

        code = _RANGE.sub(window, code)
        code = _OFFSET.sub(lambda m: f"offset{m[1]}{m[2]}{_scaled(m[3], factor)}", code)
        pieces[index] = code
        count += len(ranges) + len(offsets)
    return "".join(pieces), count


def time_compressed(groups: list[dict[str, Any]], factor: int) -> list[dict[str, Any]]:
    """The rule groups with time running `factor` times faster: every rule's `for`, and every
    range window, subquery step and offset in its expression, divided by `factor`.  Nothing
    else changes: thresholds, labels, annotations and the shape of each expression stay as
    written, so a rule fires on the same series, just sooner (at a factor of 60, a `for: 10m`
    over `rate(...[5m])` becomes `for: 10s` over `rate(...[5s])`, which a 1-second scrape
    feeds five samples).  Asserts that it changed exactly those durations."""
    compressed = []
    for group in groups:
        assert set(group) == {"name", "rules"}, f"group fields this does not scale: {set(group)}"
        rules = []
        for rule in group["rules"]:
            expr, durations = _scale_expr(rule["expr"], factor)
            assert durations or "[" not in rule["expr"], rule["expr"]
            rules.append({**rule, "expr": expr, "for": _scaled(rule["for"], factor)})
            # Nothing but `expr` and `for` differs, and `expr` only in its durations.
            unchanged = {k: v for k, v in rule.items() if k not in ("expr", "for")}
            assert {k: v for k, v in rules[-1].items() if k not in ("expr", "for")} == unchanged
            assert re.sub(_DURATION, "D", expr) == re.sub(_DURATION, "D", rule["expr"]), expr
        compressed.append({"name": group["name"], "rules": rules})
    return compressed


# --- Webhook sink ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    path: str
    authorization: str | None
    body: dict[str, Any]


class WebhookSink:
    """A tiny HTTP server in a thread that records every POST: Alertmanager's webhook receiver
    posts one JSON document per notification (prometheus/alertmanager@v0.25.0:
    notify/webhook/webhook.go L64-97; its fields are template.Data's, template/template.go
    L238-259)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[Notification] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    document = json.loads(body)
                except json.JSONDecodeError:
                    document = {"unparsed": body.decode(errors="replace")}
                with sink._lock:
                    sink._received.append(
                        Notification(self.path, self.headers.get("Authorization"), document)
                    )
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: object) -> None:  # quiet: the records are the log
                pass

        self._server = ThreadingHTTPServer((LOCALHOST, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://{LOCALHOST}:{self._server.server_address[1]}{path}"

    def received(self) -> list[Notification]:
        with self._lock:
            return list(self._received)

    def alerts(self, path: str, name: str | None = None) -> list[dict[str, Any]]:
        """Every alert posted to `path` (named `name`, if given), with the receiver it was
        posted for under `receiver` and the request's Authorization header under
        `authorization`."""
        return [
            {**alert, "receiver": note.body.get("receiver"), "authorization": note.authorization}
            for note in self.received()
            if note.path == path
            for alert in note.body.get("alerts", [])
            if name is None or alert.get("labels", {}).get("alertname") == name
        ]

    def __enter__(self) -> WebhookSink:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


# --- Processes ---------------------------------------------------------------------------------


@dataclass
class Process:
    """A server process with its output in a log file; `url` is its HTTP address."""

    name: str
    url: str
    log_path: Path
    popen: subprocess.Popen[bytes] = field(repr=False)

    def log(self, tail: int = 60) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-tail:])

    def get(self, path: str, **params: str) -> Any:
        with httpx.Client(timeout=5) as client:
            return client.get(self.url + path, params=params).raise_for_status().json()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=15)


@contextlib.contextmanager
def running(
    name: str,
    workdir: Path,
    config: Mapping[str, Any],
    command: Callable[[Path, str], list[str]],
) -> Iterator[Process]:
    """Write `config` to `<name>.yml` under `workdir`, run `command(config_path, listen_address)`
    until it answers `/-/ready`, and stop it afterwards.  A free port can be taken between
    choosing and binding it: then another is tried."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / f"{name}.yml"
    config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    for attempt in range(3):
        port = free_port()
        log_path = workdir / f"{name}.{attempt}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                command(config_path, f"{LOCALHOST}:{port}"),
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        process = Process(name, f"http://{LOCALHOST}:{port}", log_path, popen)
        try:
            if _ready(process):
                yield process
                return
        finally:
            process.stop()
        if "address already in use" not in process.log():
            break
    pytest.fail(f"{name} did not start:\n{process.log()}")


def _ready(process: Process, within: float = 60) -> bool:
    deadline = time.monotonic() + within
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                return False
            with contextlib.suppress(httpx.HTTPError):
                # Both answer /-/ready once they serve (prometheus/prometheus@v2.42.0:
                # web/web.go L479-486, 503 until the TSDB is open; prometheus/alertmanager
                # @v0.25.0:ui/web.go L82-89).
                if client.get(f"{process.url}/-/ready").status_code == 200:
                    return True
            time.sleep(0.1)
    return False


@contextlib.contextmanager
def alertmanager(workdir: Path, config: Mapping[str, Any]) -> Iterator[Process]:
    """Alertmanager with `config`, its state under `workdir`, clustering off."""
    assert ALERTMANAGER is not None, "CI must install prometheus-alertmanager"
    with running(
        "alertmanager",
        workdir,
        config,
        lambda path, listen: [
            ALERTMANAGER,
            f"--config.file={path}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address={listen}",
            # An empty cluster address turns HA gossip off, which would otherwise bind
            # 0.0.0.0:9094 (prometheus/alertmanager@v0.25.0:cmd/alertmanager/main.go L130,
            # L214-215).
            "--cluster.listen-address=",
            "--log.level=debug",
        ],
    ) as process:
        yield process


@dataclass(frozen=True)
class ScrapeTarget:
    """One target: where its metrics are and the target labels it carries."""

    job: str
    address: str
    metrics_path: str
    labels: dict[str, str]


SERVICEMONITOR = facts(
    "prometheus-operator-servicemonitor", pinned=versions.PROMETHEUS_OPERATOR_VERSION
)
OPERATOR_SCRAPE = facts("prometheus-operator-scrape", pinned=versions.PROMETHEUS_OPERATOR_VERSION)


def inference_target(settings: Settings, model: ServedModelSettings, address: str) -> ScrapeTarget:
    """The target the inference API's ServiceMonitor makes of one of its pods, serving at
    `address`: read from the Service, Deployment and ServiceMonitor the program declares for
    `model`, labelled as prometheus-operator labels it (namespace, service, pod, container, job,
    endpoint, the Service labels in `targetLabels`; Prometheus adds instance)."""
    objects = serving.inference_objects(settings, model, settings.serving.inference_image)
    [service] = [o for o in objects if o["kind"] == "Service"]
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    meta = service["metadata"]
    [monitor] = [m for m in serving.scrape_objects(model) if m["metadata"]["name"] == meta["name"]]
    [endpoint] = monitor["spec"]["endpoints"]
    [port] = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    [container] = [
        c
        for c in deployment["spec"]["template"]["spec"]["containers"]
        if any(p["name"] == port["targetPort"] for p in c["ports"])
    ]
    assert SERVICEMONITOR["job_label"]["override_field"] not in monitor["spec"]
    invalid = OPERATOR_SCRAPE["target_labels"]["invalid_label_chars"]
    copied = {
        re.sub(invalid, "_", name): meta["labels"][name]
        for name in monitor["spec"].get(OPERATOR_SCRAPE["target_labels"]["service_field"], [])
    }
    labels = {
        "namespace": meta["namespace"],
        "service": meta["name"],
        "pod": f"{deployment['metadata']['name']}-0",  # the name of one of its pods
        "container": container["name"],
        "endpoint": endpoint[SERVICEMONITOR["endpoint_label_field"]],
        **copied,
    }
    # `job` is the scrape job's name here, `instance` the address: every label is accounted for.
    assert {*labels, "job", "instance"} == {*SERVICEMONITOR["target_labels"], *copied}
    return ScrapeTarget(meta["name"], address, endpoint["path"], labels)


def prometheus_config(
    targets: list[ScrapeTarget], alertmanager_address: str, rule_file: Path, interval: str
) -> dict[str, Any]:
    """A Prometheus configuration scraping `targets` and evaluating `rule_file` every
    `interval`, sending alerts to the Alertmanager at `alertmanager_address` (API v2)."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rule_file)],
        "alerting": {
            "alertmanagers": [
                {"api_version": "v2", "static_configs": [{"targets": [alertmanager_address]}]}
            ]
        },
        "scrape_configs": [
            {
                "job_name": target.job,
                "metrics_path": target.metrics_path,
                "static_configs": [{"targets": [target.address], "labels": target.labels}],
            }
            for target in targets
        ],
    }


# How long Prometheus waits before sending a firing alert again (prometheus/prometheus@v2.42.0:
# cmd/prometheus/main.go L381-382).  It matters at start: an alert that fires before Prometheus
# has discovered its Alertmanagers (discovery reports every 5 s, discovery/manager.go L119) is
# dropped (notifier/notifier.go L320-324, L456-476: no Alertmanager, no success) and only sent
# again after this delay.
RESEND_DELAY = "1m"


@contextlib.contextmanager
def prometheus(workdir: Path, config: Mapping[str, Any], time_factor: int) -> Iterator[Process]:
    """Prometheus with `config`, its TSDB under `workdir`, its alert resend delay divided by
    `time_factor` like the rules' durations (`time_compressed`)."""
    assert PROMETHEUS is not None, "CI must install prometheus"
    with running(
        "prometheus",
        workdir,
        config,
        lambda path, listen: [
            PROMETHEUS,
            f"--config.file={path}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address={listen}",
            f"--rules.alert.resend-delay={_scaled(RESEND_DELAY, time_factor)}",
        ],
    ) as process:
        yield process


def route_timers_compressed(config: Mapping[str, Any], factor: int) -> dict[str, Any]:
    """Alertmanager's configuration with its route timers (`group_wait`, `group_interval`,
    `repeat_interval` on every route of the tree) divided by `factor`, as `time_compressed` does
    to the rules: the same routes, receivers and grouping, in a test's time.  Asserts that
    nothing else changed."""

    def scaled(route: Mapping[str, Any]) -> dict[str, Any]:
        result = dict(route)
        for key in ROUTE_TIMERS:
            if key in result:
                result[key] = _scaled(result[key], factor)
        if "routes" in result:
            result["routes"] = [scaled(child) for child in result["routes"]]
        return result

    compressed = {**config, "route": scaled(config["route"])}

    def without_timers(route: Mapping[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in route.items() if k not in ROUTE_TIMERS and k != "routes"}
        return {**kept, "routes": [without_timers(child) for child in route.get("routes", [])]}

    assert without_timers(compressed["route"]) == without_timers(config["route"])
    assert {k: v for k, v in compressed.items() if k != "route"} == {
        k: v for k, v in config.items() if k != "route"
    }
    return compressed


# The route timers Alertmanager reads (prometheus/alertmanager@v0.25.0:config/config.go L782-784).
ROUTE_TIMERS = ("group_wait", "group_interval", "repeat_interval")

"""`python -m reports.gpu` against a real Prometheus (Debian's 2.42) holding a synthetic two-day
history whose GPU hours are known exactly (tests/gpu_series.py): the report's figures must match
the truth within 1 %.  Its errors (bad range, Prometheus unreachable, no GPU series) are checked
too."""

from __future__ import annotations

import csv
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from infra import instances, versions
from reports import gpu as report
from tests import gpu_series
from tests.alert_pipeline import free_port
from tests.programs import PROMETHEUS, PROMTOOL, needs
from tests.upstream_facts import facts

needs_prometheus = needs("prometheus", "promtool")

# The Prometheus the platform runs (not Debian's 2.42 above): its HTTP API as the report uses it.
STACK_CHART = facts(
    "kube-prometheus-stack-chart",
    pinned=f"kube-prometheus-stack-{versions.KUBE_PROMETHEUS_STACK_CHART.version}",
)
API = facts("prometheus-http-api", pinned=STACK_CHART["prometheus_version"])

SCENARIO = gpu_series.two_days()
HOURS = 48
# Midnight UTC three days ago: inside Prometheus's default retention (15 days), and a whole
# number of days so each day the report queries is one of the scenario's.
START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
END = START + timedelta(hours=HOURS)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prometheus on loopback serving the scenario's series; always stopped."""
    assert PROMETHEUS is not None, "CI must install prometheus"
    assert PROMTOOL is not None, "CI must install promtool"
    work = tmp_path_factory.mktemp("gpu-report")
    data = work / "history.om"
    data.write_text(gpu_series.openmetrics(SCENARIO, int(START.timestamp())))
    tsdb = work / "tsdb"
    made = subprocess.run(
        [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(data), str(tsdb)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    data.unlink()
    config = work / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1m"}}))
    port = free_port()
    server = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tsdb}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, "prometheus exited"
            try:
                if httpx.get(f"{url}/-/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=60)


def _truth() -> dict[tuple[str, str], dict[str, float]]:
    """GPU hours and cost per (team, pool) over the report's range, from the scenario."""
    found: dict[tuple[str, str], dict[str, float]] = {}
    for (team, pool, itype), hours in SCENARIO.truth(0, HOURS * 60).items():
        price = instances.price_per_gpu_hour(itype, {})
        assert price is not None
        row = found.setdefault((team, pool), {"allocated": 0, "busy": 0, "idle": 0, "cost": 0})
        for kind in ("allocated", "busy", "idle"):
            row[kind] += hours[kind]
        row["cost"] += hours["allocated"] * price
    return found


@needs_prometheus
def test_report_matches_the_true_gpu_hours_and_cost(
    prometheus: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gpu.csv"
    status = report.main(
        ["--prometheus", prometheus, "--range", "2d", "--end", END.isoformat(), "--csv", str(out)]
    )
    printed = capsys.readouterr()
    assert status == 0, printed.err
    # A progress line per day.
    assert printed.err.count("querying ") == 2, printed.err
    with out.open() as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == report.CSV_COLUMNS
        rows = {(r["team"], r["pool"]): r for r in reader}
    truth = _truth()
    assert set(rows) == set(truth)
    for key, expected in truth.items():
        row = rows[key]
        for column, kind in (
            ("gpu_hours_allocated", "allocated"),
            ("gpu_hours_busy", "busy"),
            ("gpu_hours_idle", "idle"),
            ("cost", "cost"),
        ):
            assert float(row[column]) == pytest.approx(expected[kind], rel=0.01, abs=1e-9), (
                key,
                column,
            )
    # The table names every team, with its idle share.
    research = next(line for line in printed.out.splitlines() if line.startswith("research"))
    research_idle = sum(truth[k]["idle"] for k in truth if k[0] == "research")
    research_allocated = sum(truth[k]["allocated"] for k in truth if k[0] == "research")
    assert f"{research_idle / research_allocated:.0%}" in research
    assert {line.split()[0] for line in printed.out.splitlines()[2:]} == {t for t, _ in truth}


@needs_prometheus
def test_report_says_when_prometheus_has_no_gpu_series(
    prometheus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (START - timedelta(days=1)).isoformat()
    status = report.main(["--prometheus", prometheus, "--range", "12h", "--end", before])
    assert status == 1
    error = capsys.readouterr().err
    assert "has no GPU allocation" in error
    assert "kube_pod_container_resource_requests" in error


def test_report_says_when_prometheus_is_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert report.main(["--prometheus", url, "--range", "1d"]) == 2
    error = capsys.readouterr().err
    assert f"cannot reach Prometheus at {url}" in error
    assert "--prometheus" in error


@pytest.mark.parametrize("bad", ["7 days", "7", "0d", "1y", "-3h", "1h30m"])
def test_report_refuses_a_range_it_cannot_read(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert report.main(["--prometheus", "http://127.0.0.1:1", f"--range={bad}"]) == 2
    error = capsys.readouterr().err
    assert f"--range {bad!r} is not a duration" in error
    assert "e.g. 7d" in error


def test_report_cuts_long_ranges_into_days() -> None:
    end = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    spans = report.chunks(end - timedelta(days=2, hours=6), end)
    assert [last - first for first, last in spans] == [timedelta(days=1)] * 2 + [timedelta(hours=6)]
    assert spans[-1][1] == end


def _api_stub(answer: httpx.Response, seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer

    return httpx.MockTransport(handle)


def test_report_queries_the_instant_api_of_the_prometheus_the_platform_runs() -> None:
    """Path, parameters and answer fields as Prometheus's HTTP API has them
    (tests/upstream/prometheus-http-api.yaml)."""
    series = [{"metric": {"namespace": "research"}, "value": [0, "2"]}]
    body = {
        API["status_field"]: API["status_success"],
        API["data_field"]: {"resultType": "vector", API["result_field"]: series},
    }
    seen: list[httpx.Request] = []
    prometheus = report.Prometheus("http://prometheus:9090", timeout=5)
    prometheus.client = httpx.Client(
        base_url=prometheus.url, transport=_api_stub(httpx.Response(200, json=body), seen)
    )
    at = datetime(2026, 12, 1, tzinfo=UTC)
    assert prometheus.query("up", at) == series
    [request] = seen
    assert request.method == "GET"
    assert request.url.path == API["instant_query_path"]
    assert request.url.params[API["query_param"]] == "up"
    assert float(request.url.params[API["time_param"]]) == at.timestamp()


def test_report_passes_on_the_error_prometheus_gives() -> None:
    body = {
        API["status_field"]: API["status_error"],
        "errorType": "bad_data",
        API["error_field"]: "invalid parameter 'query': parse error",
    }
    prometheus = report.Prometheus("http://prometheus:9090", timeout=5)
    prometheus.client = httpx.Client(
        base_url=prometheus.url, transport=_api_stub(httpx.Response(400, json=body), [])
    )
    with pytest.raises(
        report.ReportError, match=r"HTTP 400\): invalid parameter 'query': parse error$"
    ):
        prometheus.query("up{", datetime(2026, 12, 1, tzinfo=UTC))

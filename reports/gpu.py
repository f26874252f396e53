"""GPU hours and cost per team over a time range, from Prometheus.

    python -m reports.gpu --prometheus http://localhost:9090 --range 7d [--end TIME] [--csv FILE]

It sums the same expressions the GPU cost recording rules record (infra/gpu_cost.py), but over
the exporters' raw series, so it also covers history from before the rules were deployed.  The
range is queried a day at a time (one line of progress each on stderr), each day as a 1-minute
subquery, so a long range never asks Prometheus for one huge evaluation.  Prices: the
`ml_platform:gpu_price_usd_per_gpu_hour` series the rules write (the stack's `gpu.prices`), or
else the catalogue's list price (infra/instances.py).
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import httpx

from infra import alerts, gpu_cost, instances

CSV_COLUMNS = ("team", "pool", "gpu_hours_allocated", "gpu_hours_busy", "gpu_hours_idle", "cost")
KINDS = {"allocated": gpu_cost.ALLOCATED, "busy": gpu_cost.BUSY, "idle": gpu_cost.IDLE}
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
CHUNK = timedelta(days=1)


class ReportError(Exception):
    """Something the user must fix or know; printed without a traceback (exit status 2)."""


class NoGpuData(ReportError):
    """Prometheus answered, but holds no GPU allocation in the range (exit status 1)."""


def parse_range(text: str) -> timedelta:
    """A Prometheus-style duration of one unit: 30m, 12h, 7d, 2w."""
    match = re.fullmatch(r"(\d+)([mhdw])", text.strip())
    if not match or int(match[1]) == 0:
        raise ReportError(
            f"--range {text!r} is not a duration: give a whole number and one unit, m (minutes), "
            "h (hours), d (days) or w (weeks), e.g. 7d or 12h"
        )
    return timedelta(seconds=int(match[1]) * _UNITS[match[2]])


def parse_end(text: str | None) -> datetime:
    """The end of the range: now, unix seconds, or an ISO 8601 time (UTC unless it says)."""
    if text is None:
        moment = datetime.now(UTC)
    elif re.fullmatch(r"\d+(\.\d+)?", text):
        moment = datetime.fromtimestamp(float(text), UTC)
    else:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ReportError(
                f"--end {text!r} is not a time: give unix seconds or ISO 8601, "
                "e.g. 2026-12-01T00:00:00Z"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    # Whole minutes: the 1-minute subquery steps then fall on the same instants in every chunk.
    return moment.replace(second=0, microsecond=0)


def chunks(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) cut into days (the last one shorter)."""
    found = []
    cursor = start
    while cursor < end:
        found.append((cursor, min(cursor + CHUNK, end)))
        cursor += CHUNK
    return found


def total_query(kind: str, seconds: int) -> str:
    """GPU hours of one kind per team, pool and instance type over the `seconds` before the
    evaluation time: the rule's expression each minute, summed, over 60.  The range is a second
    short so that it holds exactly seconds/60 steps whether the range's left edge is included
    (Prometheus 2) or not (Prometheus 3)."""
    expr = gpu_cost.EXPRESSIONS[KINDS[kind]]
    by = ", ".join(gpu_cost.BY)
    return f"sum by ({by}) (sum_over_time(({expr})[{seconds - 1}s:1m])) / 60"


class Prometheus:
    """Instant queries against Prometheus's HTTP API, with errors a person can act on.

    GET /api/v1/query with `query` and `time` (unix seconds); the answer is {status, data:
    {resultType, result}} or {status: "error", errorType, error}
    (prometheus/prometheus@v3.14.0:web/web.go L756-766; web/api/v1/api.go L66-71, L193-203,
    L443, L510-513, L526-560; tests/upstream/prometheus-http-api.yaml).
    """

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.client = httpx.Client(base_url=self.url, timeout=timeout)

    def query(self, expr: str, at: datetime) -> list[dict[str, Any]]:
        try:
            response = self.client.get(
                "/api/v1/query", params={"query": expr, "time": f"{at.timestamp():.3f}"}
            )
        except httpx.TransportError as error:
            raise ReportError(
                f"cannot reach Prometheus at {self.url} ({error.__class__.__name__}: {error}); "
                "check --prometheus (e.g. kubectl -n monitoring port-forward "
                "svc/prometheus-stack-prometheus 9090, then http://localhost:9090)"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or body.get("status") != "success":
            detail = body.get("error") or response.text[:200]
            raise ReportError(
                f"Prometheus at {self.url} refused the query (HTTP {response.status_code}): "
                f"{detail}"
            )
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def close(self) -> None:
        self.client.close()


@dataclass
class Totals:
    """GPU hours and cost per (team, pool), kept per instance type for the price."""

    hours: dict[tuple[str, str, str], dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: dict.fromkeys(KINDS, 0.0))
    )

    def add(self, kind: str, result: list[dict[str, Any]]) -> None:
        for sample in result:
            labels = sample["metric"]
            key = (
                labels.get("namespace", ""),
                labels.get("pool", ""),
                labels.get("instance_type", ""),
            )
            self.hours[key][kind] += float(sample["value"][1])

    def rows(self, prices: dict[str, float]) -> list[dict[str, Any]]:
        """One row per (team, pool): hours summed over instance types; cost None when an
        instance type of the row has no price."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for (team, pool, itype), hours in sorted(self.hours.items()):
            row = rows.setdefault(
                (team, pool),
                {"team": team, "pool": pool, **dict.fromkeys(KINDS, 0.0), "cost": 0.0},
            )
            for kind in KINDS:
                row[kind] += hours[kind]
            price = prices.get(itype)
            row["cost"] = (
                None
                if price is None or row["cost"] is None
                else row["cost"] + (hours["allocated"] * price)
            )
        return list(rows.values())


def list_prices(types: set[str]) -> dict[str, float]:
    found = {
        t: instances.price_per_gpu_hour(t, {}) for t in types if t in instances.GPU_INSTANCE_TYPES
    }
    return {t: p for t, p in found.items() if p is not None}


def collect(
    prometheus: Prometheus, start: datetime, end: datetime, progress: TextIO
) -> tuple[Totals, dict[str, float]]:
    totals = Totals()
    spans = chunks(start, end)
    for number, (first, last) in enumerate(spans, 1):
        print(
            f"querying {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC ({number}/{len(spans)})",
            file=progress,
            flush=True,
        )
        seconds = int((last - first).total_seconds())
        for kind in KINDS:
            totals.add(kind, prometheus.query(total_query(kind, seconds), last))
    # The stack's prices as the rules record them, where they have run.
    window = int((end - start).total_seconds())
    recorded = prometheus.query(
        f"max by (instance_type) (last_over_time({gpu_cost.PRICE}[{window}s]))", end
    )
    prices = list_prices({key[2] for key in totals.hours})
    prices.update({s["metric"]["instance_type"]: float(s["value"][1]) for s in recorded})
    return totals, prices


def explain_no_data(prometheus: Prometheus, start: datetime, end: datetime) -> str:
    window = int((end - start).total_seconds())
    where = (
        f"Prometheus at {prometheus.url} has no GPU allocation between "
        f"{start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC"
    )

    def present(selector: str) -> bool:
        return bool(prometheus.query(f"count(count_over_time({selector}[{window}s]))", end))

    if not present(f'kube_pod_container_resource_requests{{resource=~"{alerts.GPU_REQUESTS}"}}'):
        return (
            f"{where}: no pod requested a GPU, a time-sliced share or a MIG slice "
            "(kube_pod_container_resource_requests from kube-state-metrics); check the range "
            "and that kube-state-metrics is scraped"
        )
    if not present("kube_node_labels"):
        return (
            f"{where}: kube_node_labels is missing, so no GPU can be put in a pool; "
            "kube-state-metrics must allow the nodes' pool and instance-type labels "
            "(deploy the monitoring stack of this version)"
        )
    return (
        f"{where}: GPU pods were requested but none was Running on a node with a known pool "
        "and GPU count (kube_pod_status_phase, kube_node_status_capacity, DCGM_FI_DEV_GPU_TEMP)"
    )


def _hours(value: float) -> str:
    return f"{value:.2f}"


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    """One line per team: GPU hours allocated, busy and idle, the idle share, and the cost."""
    teams: dict[str, dict[str, Any]] = {}
    for row in rows:
        team = teams.setdefault(row["team"], {**dict.fromkeys(KINDS, 0.0), "cost": 0.0})
        for kind in KINDS:
            team[kind] += row[kind]
        team["cost"] = (
            None if team["cost"] is None or row["cost"] is None else team["cost"] + row["cost"]
        )
    header = ("team", "allocated GPU h", "busy GPU h", "idle GPU h", "idle share", "cost USD")
    lines = [header]
    for name, team in sorted(teams.items()):
        share = team["idle"] / team["allocated"] if team["allocated"] else 0.0
        lines.append(
            (
                name,
                _hours(team["allocated"]),
                _hours(team["busy"]),
                _hours(team["idle"]),
                f"{share:.0%}",
                _money(team["cost"]),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )


def write_csv(rows: list[dict[str, Any]], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(
            (
                row["team"],
                row["pool"],
                f"{row['allocated']:.4f}",
                f"{row['busy']:.4f}",
                f"{row['idle']:.4f}",
                "" if row["cost"] is None else f"{row['cost']:.4f}",
            )
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reports.gpu",
        description="GPU hours (allocated, busy, idle) and cost per team from Prometheus.",
    )
    parser.add_argument("--prometheus", required=True, help="Prometheus base URL")
    parser.add_argument("--range", required=True, help="how far back from --end: 30m, 12h, 7d, 2w")
    parser.add_argument("--end", help="end of the range (unix seconds or ISO 8601; default now)")
    parser.add_argument("--csv", help="also write team,pool rows to this CSV file")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per query (120)")
    args = parser.parse_args(argv)
    prometheus = None
    try:
        length = parse_range(args.range)
        end = parse_end(args.end)
        start = end - length
        prometheus = Prometheus(args.prometheus, args.timeout)
        totals, prices = collect(prometheus, start, end, sys.stderr)
        if not any(h["allocated"] for h in totals.hours.values()):
            raise NoGpuData(explain_no_data(prometheus, start, end))
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1 if isinstance(error, NoGpuData) else 2
    finally:
        if prometheus is not None:
            prometheus.close()
    rows = totals.rows(prices)
    print(f"GPU use from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")
    print(table(rows))
    unpriced = sorted({k[2] for k in totals.hours} - set(prices))
    if unpriced:
        print(
            f"no price for {', '.join(unpriced)}: cost n/a; set ml-platform:gpu.prices",
            file=sys.stderr,
        )
    if args.csv:
        with open(args.csv, "w", newline="") as out:
            write_csv(rows, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

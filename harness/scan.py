"""Security scan of the rendered manifests with checkov; fails on any finding not accepted.

    python -m harness.scan dev prod local      # after `make render-all`
    python -m harness.scan --all

checkov runs from its own environment (tools/checkov/.venv, made by `make setup`): it pins
libraries the platform's environment cannot share.  The findings we accept, each with its reason,
are in security/checkov-skips.yaml.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.program import ROOT, chosen_stacks, stack_arguments, stack_names

CHECKOV = ROOT / "tools" / "checkov" / ".venv" / "bin" / "checkov"
SKIPS_FILE = ROOT / "security" / "checkov-skips.yaml"


class ScanError(RuntimeError):
    """checkov could not run, or the skip list is malformed."""


@dataclass(frozen=True)
class Finding:
    check: str
    title: str
    resource: str  # Kind.namespace.name

    def __str__(self) -> str:
        return f"{self.check} {self.resource}: {self.title}"


@dataclass(frozen=True)
class Skip:
    check: str
    reason: str
    resources: frozenset[str] | None  # None: every resource

    def covers(self, finding: Finding) -> bool:
        return finding.check == self.check and (
            self.resources is None or finding.resource in self.resources
        )


def load_skips(path: Path = SKIPS_FILE) -> list[Skip]:
    entries = yaml.safe_load(path.read_text()) or []
    skips = []
    for index, entry in enumerate(entries):
        where = f"{path.name}[{index}]"
        if not isinstance(entry, dict) or not str(entry.get("check", "")).startswith("CKV"):
            raise ScanError(f"{where}: each entry needs `check: CKV_...`")
        if not str(entry.get("reason") or "").strip():
            raise ScanError(f"{where}: {entry['check']} needs a `reason`")
        unknown = set(entry) - {"check", "reason", "resources"}
        if unknown:
            raise ScanError(f"{where}: unknown keys {sorted(unknown)}")
        resources = entry.get("resources")
        skips.append(
            Skip(
                check=entry["check"],
                reason=entry["reason"],
                resources=frozenset(resources) if resources is not None else None,
            )
        )
    return skips


def _reports(output: str) -> list[dict[str, Any]]:
    data = json.loads(output)
    # One report per framework; an empty scan prints a summary object without results.
    return data if isinstance(data, list) else [data]


def run_checkov(manifests: Path) -> list[Finding]:
    """Every failed check checkov reports for one multi-document manifests file."""
    if not CHECKOV.exists():
        raise ScanError(f"{CHECKOV} is missing: run `make setup` (it installs checkov)")
    if not manifests.exists():
        raise ScanError(f"{manifests} is missing: run `make render-all` first")
    command = [
        str(CHECKOV),
        "--file",
        str(manifests),
        "--framework",
        "kubernetes",
        "--output",
        "json",
        "--quiet",
        # Offline: no guideline download from the vendor's API.
        "--skip-download",
        "--soft-fail",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0 or not done.stdout.strip():
        raise ScanError(f"checkov failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    findings = []
    for report in _reports(done.stdout):
        for failed in report.get("results", {}).get("failed_checks", []):
            findings.append(Finding(failed["check_id"], failed["check_name"], failed["resource"]))
    return sorted(set(findings), key=lambda f: (f.resource, f.check))


def unaccepted(findings: list[Finding], skips: list[Skip]) -> list[Finding]:
    return [f for f in findings if not any(skip.covers(f) for skip in skips)]


def stale(findings: list[Finding], skips: list[Skip]) -> list[Skip]:
    """Skips no finding needs any more (judge only over every stack's findings)."""
    return [skip for skip in skips if not any(skip.covers(f) for f in findings)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    stack_arguments(parser, "scan")
    parser.add_argument("--build", type=Path, default=ROOT / "build", help="rendered output")
    args = parser.parse_args(argv)
    stacks = chosen_stacks(parser, args, "scan")
    try:
        skips = load_skips()
        everything: list[Finding] = []
        status = 0
        for stack in stacks:
            findings = run_checkov(args.build / stack / "manifests.yaml")
            everything += findings
            failures = unaccepted(findings, skips)
            print(
                f"scan {stack}: {len(findings)} finding(s), {len(findings) - len(failures)} "
                f"accepted in {SKIPS_FILE.relative_to(ROOT)}, {len(failures)} failed"
            )
            for finding in failures:
                print(f"  - {finding}")
            status |= bool(failures)
    except ScanError as error:
        print(f"scan: {error}", file=sys.stderr)
        return 2
    if set(stacks) == set(stack_names()):
        for skip in stale(everything, skips):
            print(f"scan: {skip.check} is skipped but no stack triggers it; remove the entry")
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())

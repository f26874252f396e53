"""How long rendering takes, and what one more team adds, so growth is watched.

- Every stack as `make render` does it: `python -m harness.render <stack>` in a fresh process
  (the imports included, which is where bytecode compiled at install shows), wall time.
- One more team: prod, and prod with `--teams` (50) generated teams (copies of its last team
  under new names), each rendered in one warm process (the program run, its objects and their
  schema check, as `harness.render` does); the difference over the number of teams.

    python -m benchmarks.render_bench [--teams 50]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.program import run_program, stack_config, stack_names
from harness.render import kubernetes_objects, schema_problems

ROOT = Path(__file__).resolve().parents[1]
TEAMS_KEY = "ml-platform:teams"


def render_process_seconds(stack: str, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "harness.render", stack, "--out", str(out)],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def with_teams(config: dict[str, Any], count: int) -> dict[str, Any]:
    """`config` with `count` more teams, each its last team under a new name (its IAM roles
    renamed with it; what it shares, such as its alert receiver, kept)."""
    grown = copy.deepcopy(config)
    teams = grown[TEAMS_KEY]
    template = teams[-1]
    for i in range(count):
        team = copy.deepcopy(template)
        team["name"] = f"bench{i:02d}"
        access = json.dumps(team.get("access", {})).replace(template["name"], team["name"])
        team["access"] = json.loads(access)
        teams.append(team)
    return grown


def render_seconds(config: dict[str, Any]) -> float:
    started = time.perf_counter()
    run = run_program("prod", config)
    problems = schema_problems(kubernetes_objects(run), str(run.outputs["kubernetesVersion"]))
    if problems:
        raise RuntimeError(f"the generated stack does not render cleanly: {problems[:3]}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--teams", type=int, default=50)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as out:
        stacks = {stack: render_process_seconds(stack, Path(out)) for stack in stack_names()}
    prod = stack_config("prod")
    render_seconds(prod)  # warm: imports and first-run caches are not a team's cost
    base = min(render_seconds(prod) for _ in range(2))
    grown = render_seconds(with_teams(prod, args.teams))
    print("render, `python -m harness.render <stack>` in a fresh process:")
    for stack, seconds in stacks.items():
        print(f"  {stack:8} {seconds:6.1f} s")
    per_team = (grown - base) / args.teams
    print(
        f"  one more team: {per_team * 1000:.0f} ms (prod {base:.2f} s, prod with {args.teams} "
        f"more teams {grown:.2f} s, in one warm process)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Report a `pulumi preview` where reviewers look: the job summary and, for a pull request, one
comment per stack that every push edits.

The workflows run the preview with the CLI and keep its output in a file, because
pulumi/actions@v7.0.0 (src/main.ts, `runAction`) writes its summary and pull-request comment only
after the command succeeded: a preview that fails (a policy violation, `--expect-no-changes` with
changes, a program error) throws first and leaves neither.  This script reports any outcome,
also when the preview never ran because an earlier step failed.  Standard library only: it must
run when installing the program's dependencies is what failed.

    python3 scripts/preview_report.py --stack dev --output preview.txt --outcome failure \
        [--comment <pull request number>]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

# GitHub's limits: an issue or pull-request comment body holds 65,536 characters, a step's
# summary 1 MiB; the report stays well inside both.
COMMENT_LIMIT = 60_000
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_VERDICTS = {
    "success": "succeeded",
    "failure": "failed",
    "cancelled": "was cancelled",
    "skipped": "did not run (an earlier step failed; see the run's log)",
}


def marker(stack: str) -> str:
    """The hidden first line that finds this stack's comment again on the next push."""
    return f"<!-- ml-platform preview: {stack} -->"


def report(*, stack: str, outcome: str, output: str | None, command: str, run_url: str = "") -> str:
    """The Markdown report: the outcome, then the preview's output (its end, if too long)."""
    verdict = _VERDICTS.get(outcome, f"did not run (outcome {outcome or 'unknown'!r})")
    icon = ":white_check_mark:" if outcome == "success" else ":x:"
    lines = [marker(stack), f"#### {icon} `{command}` of `{stack}` {verdict}"]
    if run_url:
        lines.append(f"[The run]({run_url})")
    head = "\n".join(lines) + "\n\n"
    if output is None:
        return head + "It wrote no output: the step before it failed, and the run's log says why.\n"
    text = _ANSI.sub("", output).rstrip() or "(no output)"
    fence = "`" * max(3, _longest_backtick_run(text) + 1)
    opening = f"<details{' open' if outcome != 'success' else ''}><summary>Output</summary>\n\n"
    closing = f"\n{fence}\n\n</details>\n"
    room = COMMENT_LIMIT - len(head) - len(opening) - len(closing) - len(fence) - 100
    if len(text) > room:
        # Errors and the summary come last, so the end is the part to keep.
        text = (
            f"[... {len(text) - room} characters cut; the run's log has all of it]\n"
            + (text[-room:])
        )
    return f"{head}{opening}{fence}text\n{text}{closing}"


def _longest_backtick_run(text: str) -> int:
    return max((len(run) for run in re.findall(r"`+", text)), default=0)


def upsert_comment(repository: str, pull_request: str, stack: str, body: str) -> None:
    """Edit this stack's comment on the pull request, or add one (with `gh`, GH_TOKEN)."""
    comments = f"repos/{repository}/issues/{pull_request}/comments"
    found = subprocess.run(
        [
            "gh",
            "api",
            "--paginate",
            comments,
            "--jq",
            f".[] | select(.body | startswith({json.dumps(marker(stack))})) | .id",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    with tempfile.NamedTemporaryFile("w", suffix=".md", delete=False) as handle:
        handle.write(body)
    try:
        if found:
            target = ["-X", "PATCH", f"repos/{repository}/issues/comments/{found[0]}"]
        else:
            target = ["-X", "POST", comments]
        subprocess.run(["gh", "api", *target, "-F", f"body=@{handle.name}", "--silent"], check=True)
    finally:
        os.unlink(handle.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--output", required=True, type=Path, help="the preview's output file")
    parser.add_argument("--outcome", required=True, help="steps.<preview>.outcome")
    parser.add_argument("--command", default="pulumi preview", help="what ran, for the title")
    parser.add_argument("--comment", metavar="PR", help="also comment on this pull request")
    args = parser.parse_args(argv)
    run_url = ""
    if os.environ.get("GITHUB_RUN_ID"):
        run_url = (
            f"{os.environ.get('GITHUB_SERVER_URL', 'https://github.com')}/"
            f"{os.environ.get('GITHUB_REPOSITORY', '')}/actions/runs/{os.environ['GITHUB_RUN_ID']}"
        )
    output = args.output.read_text(errors="replace") if args.output.exists() else None
    body = report(
        stack=args.stack,
        outcome=args.outcome,
        output=output,
        command=args.command,
        run_url=run_url,
    )
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a") as handle:
            handle.write(body)
    else:
        print(body)
    if args.comment:
        upsert_comment(os.environ["GH_REPO"], args.comment, args.stack, body)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# `make preview`: run `pulumi preview` for one stack on a fresh machine.
# Logs into a local file backend when not logged in anywhere, then selects (or creates) the stack.
set -euo pipefail
stack=${1:-local}

if ! command -v pulumi >/dev/null 2>&1; then
  cat >&2 <<MSG
The pulumi CLI is not installed, so there is nothing to preview with.
Install it (https://www.pulumi.com/docs/iac/download-install/), e.g.:
    curl -fsSL https://get.pulumi.com | sh
then run 'make preview STACK=${stack}' again.
Without the CLI, 'make render STACK=${stack}' runs the same program offline under mocks and writes
build/${stack}/manifests.yaml and build/${stack}/resources.json.
MSG
  exit 1
fi

if ! pulumi whoami >/dev/null 2>&1; then
  state_dir="${PULUMI_LOCAL_STATE:-$HOME/.pulumi-local-state}"
  mkdir -p "$state_dir"
  echo "Not logged in to a Pulumi backend: using the local file backend in $state_dir" >&2
  pulumi login "file://$state_dir"
  # The file backend encrypts secrets with a passphrase; an empty one is fine for a local stack
  # but set PULUMI_CONFIG_PASSPHRASE yourself for anything shared.
  export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE-}"
fi

pulumi stack select --create "$stack"
exec pulumi preview --stack "$stack" --diff

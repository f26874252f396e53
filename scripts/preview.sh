#!/usr/bin/env bash
# `make preview`: run `pulumi preview` for one stack on a fresh machine.
# Logs into a local file backend when not logged in anywhere, then selects (or creates) the stack.
# Further arguments go to `pulumi preview` (the PR check adds `--policy-pack policy`).
set -euo pipefail
stack=${1:-local}
shift || true
cd "$(dirname "$0")/.."

if [ ! -f "Pulumi.${stack}.yaml" ]; then
  echo "No stack file Pulumi.${stack}.yaml; stacks here:" Pulumi.*.yaml >&2
  exit 1
fi

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

# The tracked stack file stays as it is.  With the file backend's passphrase provider, creating
# the stack writes its salt (`encryptionsalt:`) into Pulumi.<stack>.yaml, and so does every
# preview of a stack file without one (pulumi/pulumi@v3.259.0: pkg/cmd/pulumi/stack/io.go
# CreateStack; pkg/cmd/pulumi/config/io.go getAndSaveSecretsManager;
# pkg/secrets/passphrase/manager.go NewPromptingPassphraseSecretsManager).  So: the file is put
# back after the stack is created; the preview reads a copy (--config-file) and takes the secrets
# provider the stack was created with from its state (PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER,
# pkg/cmd/pulumi/stack/secrets.go GetSecretsManager), writing the salt into the copy only.
stack_file="Pulumi.${stack}.yaml"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -p "$stack_file" "$work/tracked.yaml"
pulumi stack select --create "$stack"
cmp -s "$work/tracked.yaml" "$stack_file" || cp -p "$work/tracked.yaml" "$stack_file"
cp "$stack_file" "$work/$stack_file"

# Pulumi's uv toolchain syncs .venv (and a policy pack's) with `uv sync --inexact` before the
# program runs, re-locking a uv.lock that no longer matches pyproject.toml without a word
# (pulumi/pulumi@v3.259.0:sdk/python/toolchain/uv.go has no option for --locked); UV_LOCKED
# makes that sync fail instead.
export UV_LOCKED=1
export PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER=true
pulumi preview --stack "$stack" --config-file "$work/$stack_file" --diff "$@"

"""Run `__main__.py` for one stack under mocks and capture every resource it registers."""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import json
import runpy
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from harness.cli_config import check_stack_config, full_key
from harness.mocks import PlatformMocks
from infra.settings import Settings, parse_settings

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = ROOT / "__main__.py"
PROJECT = "ml-platform"


@dataclass(frozen=True)
class RegisteredResource:
    """One resource as the engine would see it: what the program asked for, and where."""

    urn: str
    type: str
    name: str
    custom: bool
    parent: str | None
    dependencies: tuple[str, ...]
    provider: str | None
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    ignore_changes: tuple[str, ...] = ()
    replace_on_changes: tuple[str, ...] = ()
    delete_before_replace: bool = False
    secret_inputs: frozenset[str] = frozenset()  # paths into `inputs` that hold secrets
    # The resource transforms in its options; Pulumi runs them on the resource and, for a remote
    # component such as a kustomize Directory, on every object it registers.  Mocks do not.
    transforms: tuple[pulumi.ResourceTransform, ...] = field(default=(), compare=False)

    def masked_inputs(self) -> dict[str, Any]:
        """The inputs with every secret replaced by SECRET_MASK."""
        masked: dict[str, Any] = _masked(self.inputs, self.secret_inputs)
        return masked

    def as_json(self) -> dict[str, Any]:
        """The resource for resources.json, with secret inputs masked."""
        return {
            "type": self.type,
            "name": self.name,
            "urn": self.urn,
            "parent": self.parent,
            "dependencies": list(self.dependencies),
            "provider": self.provider,
            "inputs": whole_numbers(self.masked_inputs()),
        }


@dataclass
class ProgramRun:
    """The result of one run of the program."""

    stack: str
    resources: list[RegisteredResource]
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: frozenset[str] = frozenset()

    def of_type(self, type_: str) -> list[RegisteredResource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str) -> RegisteredResource:
        """The one resource of `type_` (an error if there are none or several)."""
        [resource] = self.of_type(type_)
        return resource


class ProgramError(RuntimeError):
    """The program failed; `resources` holds what it registered before failing."""

    def __init__(self, stack: str, cause: BaseException, resources: list[RegisteredResource]):
        super().__init__(f"stack {stack!r}: the program failed: {cause}")
        self.stack = stack
        self.cause = cause
        self.resources = resources


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """A mock monitor that also keeps each registration's parent, dependencies and provider."""

    def __init__(self, mocks: PlatformMocks) -> None:
        super().__init__(mocks)
        self.platform_mocks = mocks
        self.registrations: list[RegisteredResource] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type == "pulumi:pulumi:Stack":
            return response
        inputs = pulumi.runtime.rpc.deserialize_properties(request.object)
        outputs = self.resources[response.urn].state
        secrets: set[str] = set()
        self.registrations.append(
            RegisteredResource(
                urn=response.urn,
                type=request.type,
                name=request.name,
                custom=bool(request.custom),
                parent=request.parent or None,
                dependencies=tuple(sorted(set(request.dependencies))),  # engine order varies
                provider=_provider_urn(request.provider),
                inputs=_plain(inputs, secrets=secrets),
                outputs=_plain(outputs),
                ignore_changes=tuple(request.ignoreChanges),
                replace_on_changes=tuple(request.replaceOnChanges),
                delete_before_replace=bool(request.deleteBeforeReplace),
                secret_inputs=frozenset(secrets),
                transforms=self.platform_mocks.take_transforms(),
            )
        )
        return response


def _provider_urn(reference: str) -> str | None:
    """Provider references are `<urn>::<id>`; keep the URN."""
    return reference.rsplit("::", 1)[0] if reference else None


_SIG_KEY = "4dabf18193072939515e22adb298388d"  # pulumi.runtime.rpc: a value's type signature
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"  # ... marking a secret
SECRET_MASK = "[secret]"


def _plain(value: Any, path: str = "", secrets: set[str] | None = None) -> Any:
    """Deep-copy deserialized properties into plain values, unwrapping secrets.

    The paths of secret values are added to `secrets`, so they can be masked when written out.
    """
    if isinstance(value, Mapping):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            if secrets is not None:
                secrets.add(path)
            return _plain(value.get("value"), path, secrets)
        return {str(k): _plain(v, f"{path}.{k}".lstrip("."), secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    return value


def _masked(value: Any, secrets: frozenset[str], path: str = "") -> Any:
    if path in secrets:
        return _mask_leaves(value)
    if isinstance(value, dict):
        return {k: _masked(v, secrets, f"{path}.{k}".lstrip(".")) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, secrets, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _mask_leaves(value: Any) -> Any:
    """A secret's shape with every value masked: a Secret's `stringData` stays a map of strings
    (schema-valid), and no value shows."""
    if isinstance(value, dict):
        return {k: _mask_leaves(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_leaves(v) for v in value]
    return SECRET_MASK


def whole_numbers(value: Any) -> Any:
    """Turn the floats the engine uses for every number back into ints where they are whole."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    return value


def stack_names() -> list[str]:
    """Every stack with a `Pulumi.<stack>.yaml` next to the program."""
    return sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))


def stack_arguments(parser: argparse.ArgumentParser, verb: str) -> None:
    """The `stacks...` and `--all` arguments of a command that works on stacks."""
    parser.add_argument("stacks", nargs="*", help=f"stack names (have: {', '.join(stack_names())})")
    parser.add_argument("--all", action="store_true", help=f"{verb} every stack")


def chosen_stacks(
    parser: argparse.ArgumentParser, args: argparse.Namespace, verb: str
) -> list[str]:
    """The stacks named on the command line (or every one with --all); a usage error otherwise."""
    stacks: list[str] = stack_names() if args.all else args.stacks
    unknown = sorted(set(stacks) - set(stack_names()))
    if not stacks or unknown:
        parser.error(
            f"name stacks to {verb} (unknown: {', '.join(unknown) or 'none given'}); "
            f"have: {', '.join(stack_names())}, or use --all"
        )
    return stacks


def project_declarations() -> dict[str, Any]:
    """The `config:` block of `Pulumi.yaml`: each declared key as written there."""
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    return dict(project.get("config") or {})


def project_defaults() -> dict[str, Any]:
    """Config the CLI would take from `Pulumi.yaml`: declared defaults and provider values."""
    result: dict[str, Any] = {}
    for key, declaration in project_declarations().items():
        name = full_key(PROJECT, key)
        if isinstance(declaration, dict) and "value" in declaration:
            result[name] = declaration["value"]
        elif isinstance(declaration, dict) and "default" in declaration:
            result[name] = declaration["default"]
        elif not isinstance(declaration, dict):
            result[name] = declaration
    return result


def stack_config(stack: str) -> dict[str, Any]:
    """The stack file's `config:` map with full `namespace:key` keys (a fresh copy)."""
    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no stack file {path.name}; stacks here: {stack_names()}")
    document = yaml.safe_load(path.read_text()) or {}
    config = document.get("config") or {}
    return {full_key(PROJECT, key): copy.deepcopy(value) for key, value in config.items()}


def merged_config(
    stack: str, config: Mapping[str, Any] | None = None, *, check_config: bool = True
) -> dict[str, Any]:
    """The config the CLI hands the program: the stack's over the Pulumi.yaml defaults.

    `config` replaces the stack file's config.  Like `pulumi preview` and `pulumi up`, this
    refuses (StackConfigError) a config that misses a required key or has a value of the wrong
    type; `check_config=False` is the CLI's `--skip-config-validation`.
    """
    values = stack_config(stack) if config is None else dict(config)
    merged = {**project_defaults(), **values}
    if check_config:
        check_stack_config(PROJECT, stack, project_declarations(), values, merged)
    return merged


def raw_settings(stack: str, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The stack's `ml-platform:*` config over the Pulumi.yaml defaults, keys without namespace.

    `config` replaces the stack file's config, as in `run_program`; either must pass the CLI's
    checks (`merged_config`).
    """
    merged = merged_config(stack, config)
    prefix = f"{PROJECT}:"
    # Secrets decrypted into the placeholders the program gets (engine_config).
    return {
        k.removeprefix(prefix): _decrypted(k, v, (), [])
        for k, v in merged.items()
        if k.startswith(prefix)
    }


def stack_settings(stack: str, config: Mapping[str, Any] | None = None) -> Settings:
    """The stack's validated settings, as the program parses them (`config`: as in
    `run_program`)."""
    return parse_settings(raw_settings(stack, config), stack)


def engine_config(config: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Config values as the strings the engine hands a program; secrets become placeholders.

    `pulumi config set --secret --path 'a.b.c'` writes a nested `{secure: <ciphertext>}` leaf
    into the key's object; the engine hands the program the whole object decrypted, as JSON, and
    marks the whole key secret.  So does this, with a placeholder for each leaf.
    """
    flat: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in config.items():
        found: list[bool] = []
        decrypted = _decrypted(key, value, (), found)
        if found:
            secret_keys.append(key)
        flat[key] = decrypted if isinstance(decrypted, str) else json.dumps(decrypted)
    return flat, secret_keys


def _decrypted(key: str, value: Any, path: tuple[str | int, ...], found: list[bool]) -> Any:
    if isinstance(value, dict) and set(value) == {"secure"}:
        found.append(True)
        return secret_placeholder(key, path)
    if isinstance(value, dict):
        return {k: _decrypted(key, v, (*path, k), found) for k, v in value.items()}
    if isinstance(value, list):
        return [_decrypted(key, v, (*path, i), found) for i, v in enumerate(value)]
    return value


# Every placeholder carries this, so a test can find one wherever it leaked.
PLACEHOLDER_MARK = "mocksecret"


def secret_placeholder(key: str, path: tuple[str | int, ...] = ()) -> str:
    """The stand-in for the secret at `path` below config key `key`: of the field's shape where
    the settings model gives one (`secretPlaceholder`, e.g. a Slack webhook URL), unique to the
    key and path."""
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    token = PLACEHOLDER_MARK + hashlib.sha256(f"{key}{where}".encode()).hexdigest()[:22]
    field = settings_field(key, path)
    extra = field.json_schema_extra if field is not None else None
    shape = extra.get("secretPlaceholder") if isinstance(extra, dict) else None
    if isinstance(shape, str):
        return shape.format(token=token)
    return f"mock-secret-for-{key}{where}-{token}"


def settings_field(key: str, path: tuple[str | int, ...]) -> FieldInfo | None:
    """The settings field a config key and path below it name (list indexes and map keys
    skipped), or None."""
    if not key.startswith(f"{PROJECT}:"):
        return None
    annotation: Any = Settings
    field: FieldInfo | None = None
    for part in (key.removeprefix(f"{PROJECT}:"), *path):
        annotation = _without_optional(annotation)
        if get_origin(annotation) in (list, dict):
            annotation = get_args(annotation)[-1]  # the item or value; `part` indexes it
            continue
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        field = next(
            (info for name, info in annotation.model_fields.items() if part in (name, info.alias)),
            None,
        )
        if field is None:
            return None
        annotation = field.annotation
    return field


def _without_optional(annotation: Any) -> Any:
    """`X | None` and `Annotated[X, ...]` as X."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            options = [a for a in get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def run_program(
    stack: str,
    config: Mapping[str, Any] | None = None,
    *,
    preview: bool = False,
    check_config: bool = True,
) -> ProgramRun:
    """Run `__main__.py` afresh for `stack`, on a new event loop, and capture what it registers.

    `config` replaces the stack file's config (same `namespace:key` shape as `stack_config`);
    Pulumi.yaml defaults apply underneath either way, as they do with the CLI.  A config the CLI
    would refuse raises StackConfigError before the program runs (`merged_config`).
    """
    merged = merged_config(stack, config, check_config=check_config)
    flat, secret_keys = engine_config(merged)

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    mocks = PlatformMocks()
    monitor = RecordingMonitor(mocks)
    try:
        pulumi.runtime.set_all_config(flat, secret_keys)
        pulumi_settings.ROOT.set(None)  # a fresh root Stack resource for this run
        pulumi.runtime.set_mocks(
            mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor
        )
        pulumi_settings.SETTINGS.rpc_manager.clear()
        pulumi_settings.SETTINGS.outputs.clear()

        def program() -> None:
            runpy.run_path(str(PROGRAM), run_name="__main__")

        try:
            loop.run_until_complete(run_pulumi_func(program))
            outputs, secrets = loop.run_until_complete(_stack_outputs())
        except Exception as error:
            raise ProgramError(stack, error, list(monitor.registrations)) from error
        return ProgramRun(
            stack=stack,
            resources=list(monitor.registrations),
            outputs=outputs,
            secret_outputs=frozenset(secrets),
        )
    finally:
        pulumi.runtime.set_all_config({}, [])
        asyncio.set_event_loop(None)
        loop.close()


async def _stack_outputs() -> tuple[dict[str, Any], set[str]]:
    """The values of `pulumi.export`ed outputs, and which of them are secret."""
    root = pulumi_settings.get_root_resource()
    exported: dict[str, Any] = getattr(root, "outputs", {}) or {}
    values: dict[str, Any] = {}
    secrets: set[str] = set()
    for name, value in exported.items():
        output = pulumi.Output.from_input(value)
        values[name] = await output.future()
        if await output.is_secret():
            secrets.add(name)
    return values, secrets

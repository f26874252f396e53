"""The Dockerfiles of the images the stacks build: pinned, non-root, complete, cacheable."""

from __future__ import annotations

import ast
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGES = {
    "training": (
        "training.train",
        ["train.py", "roles.py", "prepare_data.py", "evaluate.py", "promote.py"],
    ),
    "inference": (
        "inference.server",
        ["server.py", "app.py", "batcher.py", "metrics.py", "model_store.py", "payloads.py"],
    ),
}


def _instructions(folder: str) -> list[str]:
    text = (ROOT / folder / "Dockerfile").read_text()
    joined = re.sub(r"\\\n\s*", " ", text)
    return [
        line.strip()
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _locked_version(package: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    [entry] = [p for p in lock["package"] if p["name"] == package]
    return str(entry["version"])


@pytest.mark.parametrize("folder", list(IMAGES))
def test_base_image_is_the_tensorflow_the_code_is_tested_with(folder: str) -> None:
    [base] = [line.split()[1] for line in _instructions(folder) if line.startswith("FROM ")]
    image, tag = base.rsplit(":", 1)
    assert image == "tensorflow/tensorflow"
    assert "jupyter" not in tag
    version = re.match(r"(\d+\.\d+\.\d+)", tag)
    assert version is not None
    assert version[1] == _locked_version("tensorflow")


@pytest.mark.parametrize("folder", list(IMAGES))
def test_runs_as_a_numeric_non_root_user_after_every_install(folder: str) -> None:
    instructions = _instructions(folder)
    [user] = [line for line in instructions if line.startswith("USER ")]
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    last_change = max(
        i for i, line in enumerate(instructions) if line.startswith(("RUN ", "COPY "))
    )
    assert instructions.index(user) > last_change


@pytest.mark.parametrize("folder", list(IMAGES))
def test_entrypoint_and_no_kubeflow_package(folder: str) -> None:
    module, _ = IMAGES[folder]
    instructions = _instructions(folder)
    [entrypoint] = [line for line in instructions if line.startswith("ENTRYPOINT ")]
    assert entrypoint == f'ENTRYPOINT ["python", "-m", "{module}"]'
    assert "kubeflow" not in " ".join(line for line in instructions if line.startswith("RUN "))


@pytest.mark.parametrize("folder", list(IMAGES))
def test_the_image_carries_every_module_its_code_imports(folder: str) -> None:
    _, modules = IMAGES[folder]
    copied = {
        name
        for line in _instructions(folder)
        if line.startswith("COPY ") and not line.startswith("COPY requirements")
        for name in line.split()[1:-1]
    }
    allowed = {
        line[1:]
        for line in (ROOT / folder / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert copied <= allowed
    assert {"__init__.py", *modules} <= copied
    for source in modules:
        for node in ast.walk(ast.parse((ROOT / folder / source).read_text())):
            module_name = node.module if isinstance(node, ast.ImportFrom) else None
            if module_name and module_name.startswith(f"{folder}."):
                assert f"{module_name.split('.')[1]}.py" in copied, module_name


def test_inference_requirements_are_the_locked_ones() -> None:
    """inference/requirements.txt is exported from uv.lock; regenerate it when the lock moves."""
    exported = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "uv"),
            "export",
            "--only-group",
            "inference",
            "--no-emit-project",
            "--format",
            "requirements-txt",
            "--no-header",
            "--frozen",
            "--quiet",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (ROOT / "inference" / "requirements.txt").read_text() == exported, (
        "run: make inference-requirements"
    )
    instructions = _instructions("inference")
    install = next(i for i, line in enumerate(instructions) if "pip install" in line)
    code = next(i for i, line in enumerate(instructions) if line.startswith("COPY __init__.py"))
    assert install < code, "dependencies are installed before the code is copied (layer caching)"
    assert "--require-hashes" in instructions[install]

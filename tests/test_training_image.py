"""The training image's Dockerfile: pinned, non-root, and carrying what the trainer imports."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "training" / "Dockerfile").read_text()
INSTRUCTIONS = [
    line.strip()
    for line in DOCKERFILE.splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]


def _locked_version(package: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    [entry] = [p for p in lock["package"] if p["name"] == package]
    return str(entry["version"])


def test_base_image_is_pinned_to_the_tensorflow_the_code_is_tested_with() -> None:
    [base] = [line.split()[1] for line in INSTRUCTIONS if line.startswith("FROM ")]
    image, tag = base.rsplit(":", 1)
    assert image == "tensorflow/tensorflow"
    assert tag != "latest"
    assert "jupyter" not in tag
    version = re.match(r"(\d+\.\d+\.\d+)", tag)
    assert version is not None
    assert version[1] == _locked_version("tensorflow")


def test_runs_as_a_numeric_non_root_user() -> None:
    [user] = [line.split()[1] for line in INSTRUCTIONS if line.startswith("USER ")]
    uid = user.split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    assert INSTRUCTIONS.index(next(i for i in INSTRUCTIONS if i.startswith("USER "))) > max(
        INSTRUCTIONS.index(i) for i in INSTRUCTIONS if i.startswith(("RUN ", "COPY "))
    )


def test_installs_no_kubeflow_package_and_no_unpinned_pip() -> None:
    assert "kubeflow" not in " ".join(i for i in INSTRUCTIONS if i.startswith("RUN "))
    assert "pip install" not in DOCKERFILE


def test_entrypoint_is_the_trainer() -> None:
    [entrypoint] = [line for line in INSTRUCTIONS if line.startswith("ENTRYPOINT ")]
    assert entrypoint == 'ENTRYPOINT ["python", "-m", "training.train"]'


def test_the_image_carries_every_module_the_trainer_imports() -> None:
    copied = {
        name for line in INSTRUCTIONS if line.startswith("COPY ") for name in line.split()[1:-1]
    }
    allowed = {
        line[1:]
        for line in (ROOT / "training" / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert copied <= allowed
    for module in ("train.py", "prepare_data.py", "evaluate.py", "promote.py"):
        tree = ast.parse((ROOT / "training" / module).read_text())
        for node in ast.walk(tree):
            module_name = node.module if isinstance(node, ast.ImportFrom) else None
            if module_name and module_name.startswith("training."):
                assert f"{module_name.split('.')[1]}.py" in copied, module_name
    assert {"__init__.py", "train.py", "prepare_data.py", "evaluate.py", "promote.py"} <= copied

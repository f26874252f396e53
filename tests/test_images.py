"""The Dockerfiles of the images the stacks build: pinned, non-root, complete, cacheable."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging import tags
from packaging.requirements import Requirement
from packaging.utils import parse_wheel_filename

from infra import versions
from tests.upstream_facts import facts

ROOT = Path(__file__).resolve().parents[1]
IMAGES = {
    "training": (
        "training.train",
        ["train.py", "roles.py", "prepare_data.py", "evaluate.py", "promote.py", "devices.py"],
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


def test_base_image_is_the_tensorflow_the_code_is_tested_with() -> None:
    [base] = [line.split()[1] for line in _instructions("inference") if line.startswith("FROM ")]
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


def _export(*groups: str) -> str:
    """What `uv export` writes for these dependency groups of uv.lock (the Makefile's command)."""
    only = [arg for group in groups for arg in ("--only-group", group)]
    return subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "uv"),
            "export",
            *only,
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


def test_inference_requirements_are_the_locked_ones() -> None:
    """inference/requirements.txt is exported from uv.lock; regenerate it when the lock moves."""
    exported = _export("inference")
    assert (ROOT / "inference" / "requirements.txt").read_text() == exported, (
        "run: make inference-requirements"
    )
    instructions = _instructions("inference")
    install = next(i for i, line in enumerate(instructions) if "pip install" in line)
    code = next(i for i, line in enumerate(instructions) if line.startswith("COPY __init__.py"))
    assert install < code, "dependencies are installed before the code is copied (layer caching)"
    assert "--require-hashes" in instructions[install]


# --- the training image: TensorFlow, Keras, NumPy and CUDA from the lock -----------------------

TRAINING_GROUPS = ("training", "training-cuda")  # `make training-requirements`
# The glibc of the Debian release a python:*-slim-<release> base is built on, for manylinux tags.
DEBIAN_GLIBC = {"bookworm": (2, 36), "trixie": (2, 41)}


def _pins(requirements: str) -> dict[str, str]:
    """name -> version of each `name==version` line of a requirements file."""
    found = re.findall(r"^([A-Za-z0-9._-]+)==([^\s;]+)", requirements, flags=re.MULTILINE)
    return dict(found)


def _training_base() -> tuple[str, str, str]:
    """The training image's base: (image, Python version, Debian release)."""
    [base] = [line.split()[1] for line in _instructions("training") if line.startswith("FROM ")]
    match = re.fullmatch(r"python:(\d+\.\d+\.\d+)-slim-(\w+)", base)
    assert match, f"training/Dockerfile: FROM {base}, expected python:<x.y.z>-slim-<debian>"
    return base, match[1], match[2]


def test_training_requirements_are_the_locked_ones() -> None:
    """training/requirements.txt is exported from uv.lock (TensorFlow, Keras and NumPy at the
    versions the tests run, plus the CUDA wheels); regenerate it when the lock moves."""
    exported = _export(*TRAINING_GROUPS)
    assert (ROOT / "training" / "requirements.txt").read_text() == exported, (
        "run: make training-requirements"
    )
    pins = _pins(exported)
    for package in ("tensorflow", "keras", "numpy"):
        assert pins[package] == _locked_version(package) == importlib.metadata.version(package)


def test_training_image_installs_only_the_hashed_requirements() -> None:
    """Every Python package comes from the exported lock, hash-checked, and nothing else:
    no dependency resolution, no source builds, no system packages."""
    instructions = _instructions("training")
    runs = [line for line in instructions if line.startswith("RUN ")]
    installs = [line for line in runs if re.search(r"\b(pip|apt-get|apt|uv)\b.*\binstall\b", line)]
    assert len(installs) == 1, installs
    [install] = installs
    words = shlex.split(install.split("&&")[0])
    assert words[:5] == ["RUN", "python", "-m", "pip", "install"], words
    options = words[5:]
    assert {"--require-hashes", "--no-deps", "--only-binary=:all:"} <= set(options)
    assert options[options.index("-r") + 1] == "/tmp/requirements.txt"
    # Only options and the one requirements file: no package named on the command line.
    assert [w for w in options if not w.startswith("-")] == ["/tmp/requirements.txt"]
    copy = instructions.index("COPY requirements.txt /tmp/requirements.txt")
    code = next(i for i, line in enumerate(instructions) if line.startswith("COPY __init__.py"))
    assert copy < instructions.index(install) < code, "dependencies before the code (layer cache)"
    allowed = (ROOT / "training" / ".dockerignore").read_text().splitlines()
    assert "!requirements.txt" in allowed


def test_training_image_carries_the_cuda_tensorflow_was_built_with() -> None:
    """The tensorflow:*-gpu base ships an older cuDNN major than TensorFlow 2.20 loads, so a GPU
    job would find no GPU and train on the CPU; the image takes the `and-cuda` wheels instead."""
    version = _locked_version("tensorflow")
    built = facts("tensorflow-cuda", pinned=f"v{version}")
    gpu_image = facts("tensorflow-gpu-image", pinned=f"{version}-gpu")
    assert gpu_image["cudnn_version"].split(".")[0] != built["cudnn_version"]
    base, _, _ = _training_base()
    assert not base.startswith("tensorflow/tensorflow:")

    # The facts are the wheel the lock installs: its build info and its `and-cuda` extra.
    spec = importlib.util.find_spec("tensorflow")
    assert spec is not None
    assert spec.submodule_search_locations
    package = Path(next(iter(spec.submodule_search_locations)))
    build_info = (package / "python" / "platform" / "build_info.py").read_text()
    assert f"('cuda_version', '{built['cuda_version']}')" in build_info
    assert f"('cudnn_version', '{built['cudnn_version']}')" in build_info
    extra = {
        req.name: str(req.specifier)
        for req in map(Requirement, importlib.metadata.requires("tensorflow") or [])
        if req.marker is not None
        and req.marker.evaluate({"extra": "and-cuda"})
        and not req.marker.evaluate({"extra": ""})
    }
    assert extra == built["and_cuda"]
    framework = (package / "libtensorflow_framework.so.2").read_bytes()
    for entry in built["framework_runpath"]:
        assert entry.encode() in framework, entry

    # Each wheel at the version TensorFlow was built with (the extra's lower bound).
    pins = _pins((ROOT / "training" / "requirements.txt").read_text())
    assert pins["tensorflow"] == version
    for name, specifier in built["and_cuda"].items():
        [lower] = re.findall(r">=([\w.]+)", specifier)
        assert pins[name] == lower, (name, pins.get(name), lower)


def test_training_image_python_is_the_tested_one() -> None:
    """The image's Python is the minor the tests run under and the project allows."""
    _, python, _ = _training_base()
    major, minor, _ = (int(part) for part in python.split("."))
    assert (major, minor) == sys.version_info[:2]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert Requirement(f"python{requires}").specifier.contains(python)


def test_every_training_requirement_has_a_wheel_for_the_image() -> None:
    """`--only-binary=:all:` needs a wheel of each pin for CPython of the base, on x86_64 with
    the base's glibc (the nodes are amd64; infra/images.py builds linux/amd64)."""
    _, python, debian = _training_base()
    major, minor, _ = (int(part) for part in python.split("."))
    glibc_major, glibc_minor = DEBIAN_GLIBC[debian]
    platforms = [f"manylinux_{glibc_major}_{m}_x86_64" for m in range(glibc_minor, 4, -1)]
    platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    supported = {
        *tags.cpython_tags((major, minor), platforms=platforms),
        *tags.compatible_tags((major, minor), interpreter=f"cp{major}{minor}", platforms=platforms),
    }
    lock = {p["name"]: p for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}
    pins = _pins((ROOT / "training" / "requirements.txt").read_text())
    assert pins
    for name, version in pins.items():
        entry = lock[name]
        assert entry["version"] == version
        wheels = [parse_wheel_filename(w["url"].rsplit("/", 1)[1]) for w in entry.get("wheels", [])]
        assert any(wheel_tags & supported for *_, wheel_tags in wheels), f"{name}=={version}"


def test_training_image_names_the_driver_capabilities_the_toolkit_mounts() -> None:
    """The driver libraries the container toolkit mounts are set by the image, with values the
    toolkit knows, and are at least its default (libcuda: compute; nvidia-smi: utility)."""
    toolkit = facts(
        "nvidia-container-toolkit-image", pinned=versions.GPU_OPERATOR_CONTAINER_TOOLKIT_VERSION
    )
    env: dict[str, str] = {}
    for line in _instructions("training"):
        if line.startswith("ENV "):
            for word in shlex.split(line)[1:]:
                key, _, value = word.partition("=")
                env[key] = value
    name = toolkit["driver_capabilities_env"]
    assert name in env, f"training/Dockerfile sets no {name}"
    listed = [c.strip() for c in env[name].split(",")]
    assert set(listed) <= set(toolkit["supported"]), listed
    assert set(toolkit["default"]) <= set(listed), listed

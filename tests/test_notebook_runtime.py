"""The Notebook pods run the way the Kubeflow notebook images are built to run.

The images start through s6-overlay's `/init`, which stops a non-root process whose group is not
0 (tests/upstream/s6-overlay-preinit.yaml), and expect user 1000 with primary group 0, their home
at /home/jovyan and Jupyter on 8888 (tests/upstream/kubeflow-notebook-image.yaml).  Each rendered
Notebook, and a GPU one, is checked against those facts and against what Pod Security
`restricted` admits (tests/upstream/pod-security-restricted.yaml).  The default images' TensorFlow
must be able to load the SavedModels training exports
(tests/upstream/tensorflow-savedmodel-compatibility.yaml).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from harness.program import stack_settings
from harness.render import kubernetes_objects
from infra import team_network, versions
from infra.settings import NotebookServerSettings
from tests.conftest import STACKS, stack_run
from tests.platform_network import notebook_controller
from tests.upstream_facts import facts
from workloads import manifests

ROOT = Path(__file__).resolve().parents[1]
# TensorFlow's compatibility guide is not versioned with releases: the commit it was read at.
TF_DOCS = "7c3650212740204359d4ceae481abc79345541be"
STACKS_WITH_NOTEBOOKS = [
    stack for stack in STACKS if any(team.notebooks for team in stack_settings(stack).teams)
]


def _tag(image: str) -> str:
    return image.rsplit(":", 1)[1]


def _image(image: str) -> Any:
    """The image's facts, read at the tag the pod runs."""
    return facts("kubeflow-notebook-image", pinned=_tag(image))


def _identity(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """The container's effective security context: its own fields over the pod's."""
    return {**(pod.get("securityContext") or {}), **(container.get("securityContext") or {})}


def _preinit_exit(uid: int, gid: int, image: Any, env: set[str] | None = None) -> int:
    """What s6-overlay's preinit exits with for a process of `uid`/`gid` in the image, whose
    container sets `env` besides the image's own."""
    s6 = facts("s6-overlay-preinit", pinned=image["s6_overlay"])
    run = image["run_dir"]
    mode = int(run["mode"], 8)
    if uid in (0, run["uid"]):
        return 0
    rule = s6["non_root_with_foreign_run"]
    bits = int(rule["run_group_bits"], 8)
    if (
        gid == rule["process_gid"]
        and run["gid"] == rule["run_gid"]
        and mode & bits == bits
        and bool(mode & 0o002) == rule["run_world_writable"]
    ):
        return 0
    # The model does not follow the opt-ins further; neither the images nor the pods use them.
    opt_ins = s6["opt_ins"]
    assert not mode & int(opt_ins["run_mode_bits"], 8), "a sticky /run: not modelled"
    assert opt_ins["env"] not in {*image["s6_env"], *(env or set())}, "opt-in: not modelled"
    return int(s6["exit_code"])


def _notebook_pods() -> list[tuple[str, dict[str, Any]]]:
    """Every rendered Notebook's pod spec, and a GPU notebook's (the CUDA image)."""
    pods = [
        (f"{stack} {o['metadata']['name']}", o["spec"]["template"]["spec"])
        for stack in STACKS_WITH_NOTEBOOKS
        for o in kubernetes_objects(stack_run(stack))
        if o["kind"] == "Notebook"
    ]
    settings = stack_settings("dev")
    server = settings.teams[0].notebooks[0].model_copy(update={"gpus": 1, "pool": "gpu"})
    gpu = manifests.notebook(settings, "research", server)["spec"]["template"]["spec"]
    assert gpu["containers"][0]["image"] == versions.NOTEBOOK_IMAGE_GPU
    return [*pods, ("dev gpu", gpu)]


@pytest.fixture(scope="module")
def notebook_pods() -> list[tuple[str, dict[str, Any]]]:
    pods = _notebook_pods()
    assert STACKS_WITH_NOTEBOOKS
    assert len(pods) > len(STACKS_WITH_NOTEBOOKS)
    return pods


def test_notebooks_start_past_the_images_init(notebook_pods: list[tuple[str, Any]]) -> None:
    for where, pod in notebook_pods:
        [container] = pod["containers"]
        image = _image(container["image"])
        identity = _identity(pod, container)
        env = {e["name"] for e in container.get("env", [])}
        assert identity["runAsGroup"] == image["user"]["gid"], where
        assert _preinit_exit(identity["runAsUser"], identity["runAsGroup"], image, env) == 0, where


def test_the_preinit_model_stops_a_non_root_user_outside_group_0() -> None:
    image = _image(versions.NOTEBOOK_IMAGE_CPU)
    uid = image["user"]["uid"]
    assert _preinit_exit(uid, 1000, image) == 100
    assert _preinit_exit(uid, image["user"]["gid"], image) == 0
    assert _preinit_exit(0, 1000, image) == 0  # root could fix /run (restricted forbids it)
    assert _preinit_exit(uid, 0, {**image, "run_dir": {**image["run_dir"], "mode": "0777"}}) == 100


def test_notebooks_run_as_the_images_user_and_file_owner(
    notebook_pods: list[tuple[str, Any]],
) -> None:
    for where, pod in notebook_pods:
        [container] = pod["containers"]
        image = _image(container["image"])
        owner = stack_settings(where.split()[0]).storage.file_owner
        identity = _identity(pod, container)
        # The uid writes the workspace (an EFS access point or an NFS export owned by it) and is
        # the images' jovyan at the default owner; fsGroup adds the owner's gid to the groups.
        assert identity["runAsUser"] == owner == image["user"]["uid"], where
        assert identity["fsGroup"] == owner, where


def test_notebooks_meet_pod_security_restricted(notebook_pods: list[tuple[str, Any]]) -> None:
    for where, pod in notebook_pods:
        stack = where.split()[0]
        minor = stack_settings(stack).cluster.kubernetes_version
        restricted = facts("pod-security-restricted", pinned=versions.pod_security_version(minor))
        [container] = pod["containers"]
        identity = _identity(pod, container)
        assert identity["runAsNonRoot"] is restricted["run_as_non_root"], where
        assert identity["runAsUser"] != restricted["forbidden_run_as_user"], where
        # Group 0 is what the images need, and restricted does not look at groups.
        assert "runAsGroup" in restricted["unchecked"]


def test_notebooks_home_port_and_prefix_are_the_images(
    notebook_pods: list[tuple[str, Any]],
) -> None:
    controller = notebook_controller()
    for where, pod in notebook_pods:
        [container] = pod["containers"]
        image = _image(container["image"])
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        home = mounts[image["home"]]
        # The workspace claim is the home; start-up copies the image's defaults into it.
        assert "persistentVolumeClaim" in volumes[home["name"]], where
        assert image["home_written_at_start"]
        assert not home.get("readOnly"), where
        env = {e["name"] for e in container.get("env", [])}
        # The image's HOME stays; the controller's NB_PREFIX is Jupyter's base URL, and a value
        # the template set would be kept instead.
        prefix = controller["prefix_env"]
        assert prefix["name"] == image["jupyter"]["base_url_env"]
        assert prefix["kept_if_set"]
        assert {"HOME", prefix["name"]}.isdisjoint(env), where
        # No ports: the controller adds its default, which is where the image's Jupyter listens
        # and what the team's NetworkPolicy opens to the culler.
        assert "ports" not in container, where
        port = image["jupyter"]["port"]
        assert controller["default_container_port"]["number"] == port == team_network.NOTEBOOK_PORT
        # /run and /tmp are written at start: the root file system stays writable for them.
        writable_root = container["securityContext"]["readOnlyRootFilesystem"] is False
        assert writable_root or set(image["writes"]) <= set(mounts), where


def _version(text: str) -> tuple[int, int, int]:
    major, minor, patch = (int(part) for part in text.split(".")[:3])
    return major, minor, patch


def _training_tensorflow() -> set[tuple[int, int, int]]:
    """Every TensorFlow that exports the platform's models: the lock's (the trainer as tested)
    and the training image's (the trainer as run)."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {p["version"] for p in lock["package"] if p["name"] == "tensorflow"}
    dockerfile = (ROOT / "training" / "Dockerfile").read_text()
    image = set(
        re.findall(r"tensorflow(?:/tensorflow:|(?:\[[\w-]+\])?==)(\d+\.\d+\.\d+)", dockerfile)
    )
    assert locked, "uv.lock pins no tensorflow"
    assert image, "training/Dockerfile names no TensorFlow version"
    return {_version(v) for v in locked | image}


def _loads(consumer: tuple[int, int, int], producer: tuple[int, int, int]) -> bool:
    """Whether TensorFlow `consumer` is promised to load a SavedModel `producer` wrote."""
    rule = facts("tensorflow-savedmodel-compatibility", pinned=TF_DOCS)
    assert rule["loads_in_same_major"]
    assert rule["forward_compatible_within"] == "patch"
    return consumer[0] == producer[0] and consumer[:2] >= producer[:2]


def test_the_compatibility_rule() -> None:
    assert _loads((2, 21, 0), (2, 20, 0))
    assert _loads((2, 20, 0), (2, 20, 1))  # patch releases are forward compatible
    assert not _loads((2, 17, 1), (2, 20, 0))
    assert not _loads((3, 0, 0), (2, 20, 0))


@pytest.mark.parametrize("image", [versions.NOTEBOOK_IMAGE_CPU, versions.NOTEBOOK_IMAGE_GPU])
def test_default_notebook_images_load_the_models_training_exports(image: str) -> None:
    name = image.rsplit("/", 1)[1].split(":", maxsplit=1)[0]
    notebook = _version(_image(image)["tensorflow"][name])
    for producer in _training_tensorflow():
        assert _loads(notebook, producer), (image, notebook, producer)


def test_the_image_setting_names_the_tensorflow_a_notebook_needs() -> None:
    description = NotebookServerSettings.model_fields["image"].description or ""
    for major, minor, _ in _training_tensorflow():
        assert f"({major}.{minor})" in description

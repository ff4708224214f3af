"""The container images of ``containers/``, built and run for real with podman (``make image-test``).

Skipped unless ``SMC_IMAGE_TESTS=1`` (``make image-test`` sets it, after ``tests/images/prepare`` has
installed podman and made the base image): building the images takes minutes, so ``make test`` leaves
them out. The images are built once per session from wheelhouses of this working tree
(``containers/wheelhouse``), on ``SMC_IMAGE_BASE`` (default ``localhost/debian-py:bookworm``, the
stand-in for ``python:3.11-slim-bookworm`` that ``prepare`` makes without a registry).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE = os.environ.get("SMC_IMAGE_BASE", "localhost/debian-py:bookworm")
TAG = "ci"
SIZES = ROOT / "containers" / "wheels" / "sizes.json"  # each image's size, for the docs page


def _skip_reason() -> str | None:
    if os.environ.get("SMC_IMAGE_TESTS") != "1":
        return "builds and runs container images (minutes): `make image-test` runs these (SMC_IMAGE_TESTS=1)"
    if shutil.which("podman") is None:
        return "podman is not installed: `make image-test` installs it as root (tests/images/prepare)"
    if os.geteuid() != 0:
        return "podman here runs as root (rootless podman needs subuid ranges this machine lacks)"
    return None


BUILD_TIMEOUT = 1200
"""Seconds one image's build may take: about 2 minutes here for the largest, far more while other jobs
load the machine (the first test that needs an image builds it, inside its own timeout)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.images)
            item.add_marker(pytest.mark.timeout(BUILD_TIMEOUT * 2 + 300))
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


class Podman:
    """Runs podman as this machine needs it: ``--runtime runc``, and a containers.conf without ulimits."""

    def __init__(self, conf: Path) -> None:
        conf.write_text("[containers]\ndefault_ulimits = []\n")
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``podman ARGS``; output captured as text."""
        done = subprocess.run(
            ["podman", "--runtime", "runc", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
        return done

    def inspect(self, kind: str, name: str) -> Any:
        """``podman KIND inspect NAME`` as JSON (its first object)."""
        return json.loads(self(kind, "inspect", name).stdout)[0]


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    return Podman(tmp_path_factory.mktemp("podman") / "containers.conf")


_BUILT: dict[str, str | AssertionError] = {}


def build_image(podman: Podman, image: str) -> str:
    """Build ``containers/<image>.Containerfile`` on :data:`BASE` from a fresh wheelhouse; its tag.

    Once per session: a build that failed fails every later test that needs it at once, not again."""
    previous = _BUILT.get(image)
    if isinstance(previous, AssertionError):
        raise AssertionError(f"the {image} image failed to build earlier in this session: {previous}")
    if previous is None:
        try:
            _BUILT[image] = _build(podman, image)
        except Exception as error:  # a failed or timed-out command
            _BUILT[image] = AssertionError(f"{type(error).__name__}: {error}")
            raise
    return str(_BUILT[image])


def _build(podman: Podman, image: str) -> str:
    started = time.monotonic()
    wheelhouse = subprocess.run(
        [str(ROOT / "containers" / "wheelhouse"), image],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert wheelhouse.returncode == 0, wheelhouse.stderr
    digest = wheelhouse.stdout.rsplit("WHEELHOUSE=", 1)[1].strip(" )\n")
    tag = f"localhost/smc-{image}:{TAG}"
    podman(
        "build",
        "--quiet",
        "--build-arg",
        f"BASE={BASE}",
        "--build-arg",
        f"WHEELHOUSE={digest}",
        "--file",
        str(ROOT / "containers" / f"{image}.Containerfile"),
        "--tag",
        tag,
        str(ROOT / "containers" / "wheels" / image),
        timeout=BUILD_TIMEOUT,
    )
    podman("image", "prune", "--force")  # the image this tag named before: no disk filled run after run
    size = int(podman.inspect("image", tag)["Size"])
    sizes = json.loads(SIZES.read_text()) if SIZES.exists() else {}
    sizes[image] = {"bytes": size, "build_seconds": round(time.monotonic() - started, 1), "base": BASE}
    SIZES.write_text(json.dumps(sizes, indent=2) + "\n")
    print(f"built {tag}: {size / 1e6:.0f} MB in {time.monotonic() - started:.0f} s")
    return tag


@pytest.fixture(scope="session")
def core_image(podman: Podman) -> str:
    return build_image(podman, "core")


@pytest.fixture(scope="session")
def pytorch_image(podman: Podman) -> str:
    return build_image(podman, "pytorch")


ALL_IMAGES = os.environ.get("SMC_IMAGE_TESTS_ALL") == "1"
"""Also build and run the TensorFlow and Keras images (``make image-test-all``): minutes more."""


@dataclass
class Containers:
    """Names containers and networks uniquely for one test, and removes them all after it."""

    podman: Podman
    prefix: str
    names: list[str]
    networks: list[str]

    def name(self, word: str) -> str:
        name = f"{self.prefix}-{word}"
        self.names.append(name)
        return name

    def network(self) -> str:
        name = f"{self.prefix}-net"
        self.podman("network", "create", name)
        self.networks.append(name)
        return name

    def run(self, image: str, job_dir: Path, *options: str, command: Sequence[str] = ("train",)) -> str:
        """Start ``image`` detached with ``job_dir`` mounted at /opt/ml; the container's name."""
        name = self.name(job_dir.name)
        self.podman(
            "run", "--detach", "--name", name, "--volume", f"{job_dir}:/opt/ml", *options, image, *command
        )
        return name

    def wait(self, name: str, timeout: float = 300) -> int:
        """The exit code of container ``name``, once it has exited."""
        return int(self.podman("wait", name, timeout=timeout).stdout.strip())

    def logs(self, name: str) -> str:
        done = self.podman("logs", name)
        return done.stdout + done.stderr


@pytest.fixture
def containers(podman: Podman) -> Iterator[Containers]:
    box = Containers(podman, f"smc-it-{uuid.uuid4().hex[:8]}", [], [])
    yield box
    for name in box.names:
        podman("rm", "--force", "--time", "0", name, check=False)
    for network in box.networks:
        podman("network", "rm", "--force", network, check=False)

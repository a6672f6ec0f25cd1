"""requirements.lock: the operator's runtime dependencies pinned with their hashes, as the image
installs them (Dockerfile) and the tests run on them (Makefile)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def locked() -> dict[str, tuple[Version, int]]:
    """Name -> (version, number of hashes) of every pin."""
    pins: dict[str, tuple[Version, int]] = {}
    name = ""
    for line in LOCK.read_text().splitlines():
        match = PIN.match(line)
        if match:
            name = canonicalize_name(match.group(1))
            pins[name] = (Version(match.group(2)), 0)
        elif "--hash=sha256:" in line and name:
            version, hashes = pins[name]
            pins[name] = (version, hashes + 1)
    return pins


def test_every_pin_has_a_hash_so_the_image_installs_with_require_hashes() -> None:
    pins = locked()
    assert pins, "requirements.lock has pins"
    assert not [name for name, (_, hashes) in pins.items() if hashes == 0]


def test_every_runtime_dependency_is_locked_at_a_version_it_accepts() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = locked()
    for text in project["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is a dependency but not in requirements.lock (run `make lock`)"
        assert requirement.specifier.contains(pins[name][0]), f"{name} {pins[name][0]} does not meet {text}"


def test_the_lab_and_the_tools_are_not_in_the_products_lock() -> None:
    pins = locked()
    for tool in ("cryptography", "pytest", "ruff", "mypy", "uv", "hypothesis", "checkout-gates-lab"):
        assert tool not in pins, f"{tool} is not a runtime dependency of the operator"


def test_the_tests_run_on_the_locked_versions() -> None:
    """What this venv has installed of the product's dependencies is what the image ships."""
    drift = {}
    for name, (version, _) in locked().items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            continue  # a platform-only dependency
        if installed != version:
            drift[name] = (str(installed), str(version))
    assert not drift, f"installed != locked (re-create the venv: rm -rf .venv && make setup): {drift}"


def test_the_image_builds_its_wheels_from_the_lock_with_hashes() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes" in dockerfile and "-r requirements.lock" in dockerfile
    assert "--no-deps" in dockerfile, "the project's own wheel adds no unlocked dependency"

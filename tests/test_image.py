"""The container image's recipe: hadolint passes, the runtime has the time zone database and
can take the package's extras (``msk``), and the wheel it installs, built here the same way,
carries everything the service reads at run time and runs ``wawindow --help``."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from wawindow.cli import parse_roles
from wawindow.config import Settings
from wawindow.service.roles import required_settings

ROOT = Path(__file__).parent.parent
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
BIN = Path(sys.executable).parent


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_unprivileged_with_wawindow_as_entry_point() -> None:
    steps = instructions()
    stages = [arg for op, arg in steps if op == "FROM"]
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]

    assert len(stages) == 2  # build, then runtime
    assert json.loads(dict(final)["ENTRYPOINT"]) == ["wawindow"]
    cmd = json.loads(dict(final)["CMD"])
    assert cmd[0] == "run"
    assert parse_roles(cmd[1])
    assert re.fullmatch(r"\d+:\d+", dict(final)["USER"])
    assert not dict(final)["USER"].startswith("0:")
    assert not any(op == "COPY" and "--from" not in arg for op, arg in final)  # no sources
    for op, arg in steps:
        if op == "COPY" and "--from" not in arg:
            for source in arg.split()[:-1]:
                assert (ROOT / source).exists(), source


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    return steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]


def test_the_runtime_installs_the_time_zone_database() -> None:
    """zoneinfo reads the system's tzdata (slim Debian images no longer carry it): installed
    in the final stage, without recommends, the package lists removed in the same layer."""
    [install] = [arg for op, arg in final_stage() if op == "RUN" and "apt-get install" in arg]
    commands = [c.strip() for c in install.split("&&")]

    assert commands[0] == "apt-get update"
    [get] = [c for c in commands if c.startswith("apt-get install")]
    assert "tzdata" in shlex.split(get)
    assert "--no-install-recommends" in get.split()
    assert "rm -rf /var/lib/apt/lists/*" in commands


def test_the_image_takes_the_packages_extras_as_a_build_argument() -> None:
    """``--build-arg EXTRAS=msk`` (Amazon MSK IAM's signer) reaches both pip commands: the
    build stage's wheels and the runtime's install; without it, the plain package."""
    steps = instructions()
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"])  # fmt: skip
    stages = [i for i, (op, _) in enumerate(steps) if op == "FROM"]
    pips = [arg for op, arg in steps if op == "RUN" and re.search(r"\bpip (wheel|install)\b", arg)]

    assert "msk" in extras
    assert ("ARG", 'EXTRAS=""') in steps[: stages[0]]  # declared once, empty by default
    for start, end in zip(stages, [*stages[1:], len(steps)], strict=True):
        assert ("ARG", "EXTRAS") in steps[start:end]  # and taken into each stage
    assert len(pips) == 2
    for value, wanted in (("", {".", "wawindow"}), ("msk", {".[msk]", "wawindow[msk]"})):
        words = set()
        for pip in pips:
            [target] = [w for w in re.findall(r'"([^"]*)"', pip) if "EXTRAS" in w]
            expanded = subprocess.run(
                ["sh", "-c", f'printf %s "{target}"'], env={"EXTRAS": value},
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            words.add(expanded)
        assert words == wanted


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        capture_output=True, check=True, timeout=300,
    )  # fmt: skip
    [built] = out.glob("wawindow-*.whl")
    return built


def test_the_wheel_holds_what_the_service_reads_at_run_time(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())

    for lua in ("read", "commit", "deadline", "summary"):
        assert f"wawindow/engine/lua/{lua}.lua" in names
    assert "wawindow/api/openapi.json" in names
    assert "wawindow/py.typed" in names
    assert any(n.startswith("wawindow/devservices/files/") for n in names)
    assert not any(n.startswith("tests/") for n in names)


def test_the_wheels_entry_point_runs(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
         str(target), str(wheel)],
        check=True, timeout=120,
    )  # fmt: skip
    # the wheel's package first; its dependencies from this virtualenv
    env = {"PYTHONPATH": str(target), "PATH": str(BIN)}
    where = subprocess.run(
        [sys.executable, "-c", "import wawindow.engine.store as s; print(s.__file__)"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    helped = subprocess.run(
        [str(target / "bin" / "wawindow"), "--help"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip

    assert where.stdout.startswith(str(target))
    assert helped.returncode == 0, helped.stderr
    for command in ("dev", "run", "replay", "reconcile", "counts", "events"):
        assert command in helped.stdout


def test_compose_services_start_with_the_example_settings() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    example = {}
    for line in (ROOT / "deploy" / "wawindow.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            example[name] = value
    images = {s.get("image", "") for s in compose["services"].values()}

    assert {"apache/kafka:4.1.1", "redis:7.4"} <= images
    for name, service in compose["services"].items():
        if service.get("image") != "wawindow:0.1.0":
            continue
        assert service["env_file"] == "wawindow.env"
        env = {**example, **service["environment"]}
        settings = Settings.from_env(env)
        command = service["command"]
        if command[0] == "run":
            settings.require(*required_settings(parse_roles(command[1])))
        else:
            assert command == ["topics", "create"], name

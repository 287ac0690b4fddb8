"""What `pip install .` and contrib/ give an operator: a wheel with the right contents and a sound systemd unit.

The wheel is built from a copy of the working tree (so the build never writes
build/ or *.egg-info into the checkout other tests run from) with pip, the way
`pip install .` builds it. Without build isolation when this Python already
has a setuptools that can build wheels (offline-friendly); otherwise with it,
which fetches setuptools and wheel from the package index as `pip install .` does.
"""

from __future__ import annotations

import configparser
import email.parser
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

from raftstore.cli import cli

ROOT = Path(__file__).resolve().parent.parent
SETUP_CFG = ROOT / "setup.cfg"
UNIT = ROOT / "contrib" / "raftstore.service"

# Source folder -> the package it is installed as (setup.cfg's package_dir).
PACKAGES = {"raftstore": "raftstore", "keyring": "raftstore/keyring", "cli": "raftstore/cli"}
NOT_COPIED = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis", ".pytest_cache", "out")


def _setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(SETUP_CFG)
    return parser


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def _can_build_without_isolation() -> bool:
    """setuptools >= 64 (PEP 660, setup.cfg-only projects) plus a bdist_wheel: its own from 70.1, else `wheel`."""
    try:
        setuptools_version = _version_tuple(metadata.version("setuptools"))
    except metadata.PackageNotFoundError:
        return False
    if setuptools_version < (64,):
        return False
    if setuptools_version >= (70, 1):
        return True
    try:
        metadata.version("wheel")
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    work = tmp_path_factory.mktemp("packaging")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_COPIED))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
               "-w", str(work / "dist")]
    if _can_build_without_isolation():
        command.append("--no-build-isolation")
    result = subprocess.run([*command, str(source)], check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{shlex.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    (built,) = (work / "dist").glob("raftstore-*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


def _dist_info(archive: zipfile.ZipFile, name: str) -> str:
    (path,) = [n for n in archive.namelist() if re.fullmatch(rf"raftstore-[^/]+\.dist-info/{name}", n)]
    return archive.read(path).decode()


def test_wheel_holds_every_module_of_the_three_packages(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for folder, package in PACKAGES.items():
        for source in (ROOT / folder).glob("*.py"):
            assert f"{package}/{source.name}" in names, f"{folder}/{source.name} is not in the wheel"
        assert f"{package}/py.typed" in names, f"{package} is typed but the wheel lacks py.typed"
    assert "raftstore/cli/_completion.py" in names and "raftstore/cli/_version.py" in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "keyring/", "cli/"))]


def test_wheel_installs_the_console_script(wheel: zipfile.ZipFile) -> None:
    entry_points = configparser.ConfigParser()
    entry_points.read_string(_dist_info(wheel, "entry_points.txt"))
    assert entry_points["console_scripts"]["raftstore"].strip() == "raftstore.cli:main"


def test_wheel_metadata(wheel: zipfile.ZipFile) -> None:
    meta = email.parser.Parser().parsestr(_dist_info(wheel, "METADATA"))
    cfg = _setup_cfg()
    assert meta["Name"] == "raftstore"
    assert meta["Version"] == cfg["metadata"]["version"]
    assert meta["Requires-Python"] == ">=3.11"
    assert meta.get_payload().lstrip().startswith("# raftstore"), "README.md is the long description"
    declared = {re.match(r"[A-Za-z0-9._-]+", line).group(0).lower().replace("_", "-")  # type: ignore[union-attr]
                for line in cfg["options"]["install_requires"].split("\n") if line.strip()}
    required = {re.match(r"[A-Za-z0-9._-]+", line).group(0).lower().replace("_", "-")  # type: ignore[union-attr]
                for line in meta.get_all("Requires-Dist", []) if "extra ==" not in line}
    assert required == declared


def test_python_requirement_and_classifiers_agree() -> None:
    options = _setup_cfg()
    minimum = _version_tuple(options["options"]["python_requires"].removeprefix(">="))
    assert sys.version_info[:2] >= minimum, "the Python running the tests must be one we declare"
    classifiers = options["metadata"]["classifiers"]
    versions = [_version_tuple(v) for v in re.findall(r"Programming Language :: Python :: (3\.\d+)", classifiers)]
    assert minimum in versions, "the oldest supported Python is listed"
    assert all(version >= minimum for version in versions), "no classifier below python_requires"


def test_python_dash_m_raftstore() -> None:
    result = subprocess.run([sys.executable, "-m", "raftstore", "--help"], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: raftstore ")


# ------------------------------------------------------------------ contrib/raftstore.service


def _unit() -> configparser.ConfigParser:
    # systemd allows repeated keys (SystemCallFilter=) and bare '%' specifiers.
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def test_unit_is_hardened() -> None:
    service = _unit()["Service"]
    expected = {
        "Type": "simple",  # the daemon does not speak sd_notify
        "Restart": "on-failure",
        "User": "raftstore",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "LockPersonality": "yes",
        "StateDirectory": "raftstore",
        "StateDirectoryMode": "0700",
        "UMask": "0077",
        "CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert service.get(key) == value, f"{key}={value} expected, got {service.get(key)!r}"
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert int(service["LimitNOFILE"]) >= 4096
    assert "Environment" not in service and "EnvironmentFile" not in service, "no unlock key may reach the unit"


def test_unit_explains_that_autolock_waits_for_an_operator() -> None:
    text = UNIT.read_text()
    assert "raftstore unlock" in text and "never" in text


def test_unit_runs_the_daemon_with_options_it_accepts() -> None:
    argv = shlex.split(_unit()["Service"]["ExecStart"])
    assert Path(argv[0]).name == "raftstore" and argv[1] == "daemon"
    options = [arg.partition("=")[0] for arg in argv[2:] if arg.startswith("-")]
    assert "--data-dir" in options and argv[argv.index("--data-dir") + 1] == "/var/lib/raftstore"
    help_text = CliRunner().invoke(cli, ["daemon", "--help"]).output
    for option in options:
        assert re.search(rf"(^|[ ,]){re.escape(option)}\b", help_text, re.MULTILINE), f"daemon --help lacks {option}"
    daemon = cli.commands["daemon"]
    daemon.make_context("daemon", argv[2:])  # click parses the whole command line (raises UsageError if not)


def test_unit_state_directory_is_the_data_dir() -> None:
    service = _unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[argv.index("--data-dir") + 1] == f"/var/lib/{service['StateDirectory']}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point it at this environment's raftstore.
    script = Path(sys.executable).parent / "raftstore"
    if not script.exists():
        pytest.skip("the raftstore console script is not installed next to this Python")
    unit = tmp_path / "raftstore.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/raftstore", str(script)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "raftstore.service" not in result.stderr, result.stderr

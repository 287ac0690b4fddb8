"""Issue 14: secrets and configs delivered to files on tmpfs (``raftstore daemon --secrets-dir``), as Swarm mounts
them under /run/secrets: on the node granted them only, mode 0400 (configs 0444), gone on revoke, rm or stop, and
never in plain form under a data directory.

The tmpfs test mounts one when run as root (and skips, saying why, elsewhere); the others use a plain directory
with the explicit override, or check the refusals, and run anywhere.
"""

from __future__ import annotations

import os
import secrets
import signal
import stat
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from raftstore.node._delivery import MEMORY_FILESYSTEMS, filesystem_type
from raftstore.tools._local_cluster import RAFTSTORE, Cluster, Node, wait_until

pytestmark = pytest.mark.integration

DELIVERY = 5.0  # seconds: the bound for a grant or a revoke to reach the files


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A fresh tmpfs (root only: mount(2) needs CAP_SYS_ADMIN)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the tmpfs delivery test runs as root (as in CI)")
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir(mode=0o700)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _secrets_flags(directory: Path, *, not_tmpfs: bool = False) -> list[str]:
    return ["--secrets-dir", str(directory)] + (["--secrets-dir-not-tmpfs"] if not_tmpfs else [])


def _appears(path: Path, data: bytes, mode: int) -> bool:
    try:
        info = path.stat()
    except FileNotFoundError:
        return False
    return stat.S_IMODE(info.st_mode) == mode and path.read_bytes() == data


def _plain_copies(value: bytes, *nodes: Node) -> list[Path]:
    found = []
    for node in nodes:
        for path in node.data_dir.rglob("*"):
            if path.is_file() and not path.is_socket() and value in path.read_bytes():
                found.append(path)
    return found


def test_a_granted_secret_is_a_0400_file_on_tmpfs_for_as_long_as_the_grant(cluster: Cluster, tmpfs: Path) -> None:
    m1 = cluster.add("m1", extra=_secrets_flags(tmpfs / "m1"))
    w1 = cluster.add("w1", extra=_secrets_flags(tmpfs / "w1"))
    cluster.init(m1, "--autolock")
    cluster.join(w1, m1, "worker")
    w1_id, m1_id = w1.info()["node_id"], m1.info()["node_id"]
    assert w1.info()["secrets_dir"] == str(tmpfs / "w1")
    value = b"db-" + secrets.token_hex(24).encode()
    on_worker, on_manager = tmpfs / "w1" / "db-password", tmpfs / "m1" / "db-password"

    m1.run("secret", "create", "db-password", "-", "--grant", w1_id, input=value)
    wait_until(lambda: _appears(on_worker, value, 0o400), timeout=DELIVERY, what="the secret on the worker's tmpfs")
    assert MEMORY_FILESYSTEMS.get(filesystem_type(on_worker)) == "tmpfs"
    assert not on_manager.exists()  # not granted to the manager
    assert sorted(p.name for p in (tmpfs / "w1").iterdir() if not p.name.startswith(".")) == ["configs",
                                                                                              "db-password"]

    config = b"listen " + secrets.token_hex(8).encode()
    m1.run("config", "create", "app.conf", "-", "--grant", w1_id, input=config)
    wait_until(lambda: _appears(tmpfs / "w1" / "configs" / "app.conf", config, 0o444), timeout=DELIVERY,
               what="the config on the worker's tmpfs")
    assert w1.run("config", "read", "app.conf").stdout.encode() == config

    m1.run("secret", "grant", "db-password", m1_id)
    wait_until(lambda: _appears(on_manager, value, 0o400), timeout=DELIVERY, what="the secret on the manager's tmpfs")
    assert _plain_copies(value, m1, w1) == []  # sealed in the log, never in plain form under a data directory

    m1.run("secret", "revoke", "db-password", w1_id)
    wait_until(lambda: not on_worker.exists(), timeout=DELIVERY, what="the revoked secret gone from the worker")
    m1.run("config", "revoke", "app.conf", w1_id)
    wait_until(lambda: not (tmpfs / "w1" / "configs" / "app.conf").exists(), timeout=DELIVERY,
               what="the revoked config gone")
    m1.run("secret", "rm", "--force", "db-password")
    wait_until(lambda: not on_manager.exists(), timeout=DELIVERY, what="the removed secret gone from the manager")

    # A daemon that stops takes its files with it; one that was killed leaves them for its successor to remove.
    m1.run("secret", "create", "api-token", "-", "--grant", w1_id, input="tok")
    token = tmpfs / "w1" / "api-token"
    wait_until(lambda: _appears(token, b"tok", 0o400), timeout=DELIVERY, what="api-token delivered")
    w1.stop()
    assert not token.exists()
    w1.start(_secrets_flags(tmpfs / "w1"))
    wait_until(lambda: _appears(token, b"tok", 0o400), timeout=DELIVERY, what="api-token back after the restart")
    w1.kill(signal.SIGKILL)
    assert token.exists()
    m1.run("secret", "revoke", "api-token", w1_id)
    w1.start(_secrets_flags(tmpfs / "w1"))
    assert not token.exists()  # removed at start, before the worker asked anything

    # A manager that restarts locked (autolock) holds no secret file until it is unlocked.
    key = m1.run("unlock-key", "-q").stdout.strip()
    m1.run("secret", "create", "m-secret", "-", "--grant", m1_id, input="mv")
    mine = tmpfs / "m1" / "m-secret"
    wait_until(lambda: _appears(mine, b"mv", 0o400), timeout=DELIVERY, what="the manager's own secret")
    m1.kill(signal.SIGKILL)
    m1.start(_secrets_flags(tmpfs / "m1"))
    assert m1.info()["locked"] is True and not mine.exists()
    m1.run("unlock", input=key + "\n")
    wait_until(lambda: _appears(mine, b"mv", 0o400), timeout=DELIVERY, what="the secret back after unlock")


def test_delivery_on_a_plain_directory_needs_the_explicit_override(cluster: Cluster, tmp_path: Path) -> None:
    m1 = cluster.add("m1")
    cluster.init(m1)
    plain = tmp_path / "plain-secrets"
    refused = subprocess.run(RAFTSTORE + ["daemon", "--data-dir", str(tmp_path / "w"), "--secrets-dir", str(plain)],
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        f"Error: the secrets directory {plain} is not on tmpfs, so secrets would reach a disk: mount a tmpfs there "
        "(or, unsafe, pass --secrets-dir-not-tmpfs)")
    assert not plain.exists()  # nothing created on the disk

    w1 = cluster.add("w1", extra=_secrets_flags(plain, not_tmpfs=True))
    cluster.join(w1, m1, "worker")
    m1.run("secret", "create", "s1", "-", "--grant", w1.info()["node_id"], input="v1")
    wait_until(lambda: _appears(plain / "s1", b"v1", 0o400), timeout=DELIVERY, what="s1 delivered")
    [finding] = [f for f in w1.run("doctor", "--format", "json").json if f["check"] == "secrets-dir"]
    assert finding["severity"] == "warning" and "not on tmpfs" in finding["message"]
    assert not [f for f in m1.run("doctor", "--format", "json").json if f["check"] == "secrets-dir"]  # delivery off
    m1.run("secret", "rm", "--force", "s1")
    wait_until(lambda: not (plain / "s1").exists(), timeout=DELIVERY, what="s1 removed")


@pytest.mark.parametrize("case", ["foreign files", "writable by others", "in use"])
def test_an_unusable_secrets_dir_stops_the_daemon_with_one_line(tmp_path: Path, case: str) -> None:
    directory = tmp_path / "s"
    directory.mkdir(mode=0o700)
    holder = None
    if case == "foreign files":
        (directory / "notes.txt").write_text("mine")
        expected = f"Error: the secrets directory {directory} is not empty and not raftstore's: give the daemon a " \
                   "directory of its own"
    elif case == "writable by others":
        os.chmod(directory, 0o777)
        expected = (f"Error: the secrets directory {directory} is writable by other users (mode 0777): they could "
                    "replace a secret")
    else:
        holder = Node("holder", tmp_path / "holder", 0, tmp_path / "holder.log")
        holder.start(_secrets_flags(directory, not_tmpfs=True))
        expected = f"Error: the secrets directory {directory} is in use by another raftstore daemon"
    try:
        result = subprocess.run(RAFTSTORE + ["daemon", "--data-dir", str(tmp_path / "d"),
                                             *_secrets_flags(directory, not_tmpfs=True)],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1] == expected
    finally:
        if holder is not None:
            holder.kill()
    if case == "foreign files":
        assert (directory / "notes.txt").read_text() == "mine"

"""Backup and restore: snapshot save on a manager, snapshot restore on a fresh node or over another cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raftstore.tools._local_cluster import Cluster, wait_until

pytestmark = pytest.mark.integration


def test_save_and_restore(cluster: Cluster, tmp_path: Path) -> None:
    m1, m2, m3 = cluster.add("m1"), cluster.add("m2"), cluster.add("m3")
    cluster.init(m1, "--autolock")
    cluster.join(m2, m1, "manager")
    cluster.join(m3, m1, "manager")
    key = m1.run("unlock-key", "-q").stdout.strip()
    source_cluster = m1.info()["cluster_id"]
    for i in range(25):
        m2.run("kv", "put", f"app/{i}", f"value-{i}")
    m1.run("secret", "create", "db-password", "-", input="s3cr3t")
    backup = tmp_path / "cluster.snap"
    out = m3.run("snapshot", "save", str(backup), "--format", "json").json
    assert out["cluster_id"] == source_cluster and out["autolock"] is True
    assert backup.stat().st_mode & 0o777 == 0o600
    m1.run("kv", "put", "after-backup", "not in it")
    data = backup.read_bytes()
    for plain in (b"value-1", b"s3cr3t", key.encode()):
        assert plain not in data

    # A damaged backup is refused and changes nothing.
    fresh = cluster.add("fresh")
    damaged = tmp_path / "damaged.snap"
    damaged.write_bytes(data[:-40] + bytes(b ^ 0x55 for b in data[-40:]))
    refused = fresh.run("snapshot", "restore", str(damaged), check=False)
    assert refused.returncode == 1 and refused.stderr.startswith("Error: snapshot damaged")
    assert fresh.info()["state"] == "inactive"

    # On a fresh node: a one-manager cluster of the source, locked until the source's key opens it.
    restored = fresh.run("snapshot", "restore", str(backup), "--listen-addr", fresh.addr).stdout
    assert "only manager" in restored and "locked" in restored
    info = fresh.info()
    assert info["locked"] is True and info["cluster_id"] == source_cluster
    assert fresh.run("unlock", input="SWMKEY-1-" + "A" * 43 + "\n", check=False).stderr.startswith("Error: invalid unlock key")
    fresh.run("unlock", input=key + "\n")
    wait_until(lambda: fresh.info()["state"] == "manager", what="restored manager running")
    assert fresh.run("kv", "get", "app/24").stdout == "value-24\n"
    assert fresh.run("kv", "get", "after-backup", check=False).returncode == 1
    assert json.loads(fresh.run("secret", "inspect", "--format", "json", "db-password").stdout)["name"] == "db-password"
    assert fresh.info()["managers"] == 1
    fresh.run("kv", "put", "on-restored", "yes")

    # Others can join the restored cluster with its (the source's) tokens.
    joiner = cluster.add("joiner")
    cluster.join(joiner, fresh, "manager")
    assert joiner.run("kv", "get", "on-restored").stdout == "yes\n"


def test_restore_over_another_cluster_needs_force(cluster: Cluster, tmp_path: Path) -> None:
    a, b = cluster.add("a"), cluster.add("b")
    cluster.init(a, "--autolock")
    cluster.init(b)
    key = a.run("unlock-key", "-q").stdout.strip()
    a.run("kv", "put", "from", "a")
    backup = tmp_path / "a.snap"
    a.run("snapshot", "save", str(backup))
    b.run("kv", "put", "from", "b")

    refused = b.run("snapshot", "restore", str(backup), check=False)
    assert refused.returncode == 1 and "use --force" in refused.stderr and "this node belongs to cluster" in refused.stderr
    assert b.run("kv", "get", "from").stdout == "b\n"

    b.run("snapshot", "restore", "--force", str(backup), "--listen-addr", b.addr)
    assert b.info()["locked"] is True
    b.run("unlock", input=key + "\n")
    wait_until(lambda: b.info()["state"] == "manager", what="restored")
    assert b.run("kv", "get", "from").stdout == "a\n"
    assert b.info()["cluster_id"] == a.info()["cluster_id"]


def test_backup_of_a_cluster_without_autolock_opens_directly(cluster: Cluster, tmp_path: Path) -> None:
    a, fresh = cluster.add("a"), cluster.add("fresh")
    cluster.init(a)
    a.run("kv", "put", "k", "v")
    backup = tmp_path / "a.snap"
    a.run("snapshot", "save", str(backup))
    fresh.run("snapshot", "restore", str(backup), "--listen-addr", fresh.addr)
    wait_until(lambda: fresh.info()["state"] == "manager", what="restored")
    assert fresh.run("kv", "get", "k").stdout == "v\n"

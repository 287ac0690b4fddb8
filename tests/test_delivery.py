"""The secrets directory's own rules (issue 14), without a cluster: what is written, how, and what is refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from raftstore.node._delivery import MARKER, MEMORY_FILESYSTEMS, SecretsDir, filesystem_type
from raftstore.keyring import InvalidArgument, PermissionDenied, Unavailable

VALUES = {("secrets", "s1"): b"one", ("secrets", "s2"): b"two", ("configs", "c1"): b"conf"}


def _fetch(table: str, object_id: str) -> bytes:
    return VALUES[(table, object_id)]


def _listing(secrets: dict[str, str], configs: dict[str, str] | None = None) -> dict:
    return {"secrets": [{"id": i, "name": n} for n, i in secrets.items()],
            "configs": [{"id": i, "name": n} for n, i in (configs or {}).items()]}


@pytest.fixture
def directory(tmp_path: Path) -> SecretsDir:
    d = SecretsDir(tmp_path / "secrets", allow_disk=True)
    d.open()
    return d


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_exactly_what_is_granted_with_its_mode(directory: SecretsDir) -> None:
    root = directory.path
    directory.reconcile(_listing({"db": "s1", "api": "s2"}, {"app.conf": "c1"}), _fetch, print)
    assert (root / "db").read_bytes() == b"one" and _mode(root / "db") == 0o400
    assert (root / "configs" / "app.conf").read_bytes() == b"conf" and _mode(root / "configs" / "app.conf") == 0o444
    assert _mode(root) == 0o711 and _mode(root / "configs") == 0o755
    (root / "stray").write_bytes(b"x")
    directory.reconcile(_listing({"api": "s2"}), _fetch, print)
    assert sorted(os.listdir(root)) == sorted([MARKER, "configs", "api"]) and os.listdir(root / "configs") == []
    directory.clear()
    assert sorted(os.listdir(root)) == sorted([MARKER, "configs"])


def test_a_value_is_written_whole_under_a_temporary_name_with_its_final_mode(
        directory: SecretsDir, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        seen.append((path.parent, path.name, stat.S_IMODE(os.fstat(fd).st_mode)))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    directory.reconcile(_listing({"db": "s1"}), _fetch, print)
    monkeypatch.undo()
    [(parent, name, mode)] = seen
    assert parent == directory.path and name.startswith(".tmp-") and mode == 0o400
    assert sorted(os.listdir(directory.path)) == sorted([MARKER, "configs", "db"])  # the temporary name is gone


def test_names_from_a_manager_never_leave_the_directory(directory: SecretsDir) -> None:
    with pytest.raises(InvalidArgument):
        directory.reconcile(_listing({"../escape": "s1"}), _fetch, print)
    assert not (directory.path.parent / "escape").exists()


def test_a_secret_named_configs_is_not_delivered_and_said_once(directory: SecretsDir) -> None:
    warnings: list[str] = []
    for _ in range(2):
        directory.reconcile(_listing({"configs": "s1"}), _fetch, warnings.append)
    assert len(warnings) == 1 and "configs/" in warnings[0]
    assert (directory.path / "configs").is_dir()


def test_a_value_revoked_between_listing_and_read_is_skipped(directory: SecretsDir) -> None:
    def refuse(table: str, object_id: str) -> bytes:
        raise PermissionDenied("permission denied")

    directory.reconcile(_listing({"db": "s1"}), refuse, print)
    assert not (directory.path / "db").exists()


def test_what_a_killed_daemon_left_is_removed_at_the_next_open(tmp_path: Path) -> None:
    first = SecretsDir(tmp_path / "s", allow_disk=True)
    first.open()
    first.reconcile(_listing({"db": "s1"}), _fetch, print)
    with pytest.raises(Unavailable):  # its daemon still runs: a second one may not take the directory
        SecretsDir(tmp_path / "s", allow_disk=True).open()
    os.close(first._lock_fd)  # the first daemon dies
    SecretsDir(tmp_path / "s", allow_disk=True).open()
    assert not (tmp_path / "s" / "db").exists()


def test_a_disk_directory_is_refused_without_the_override_and_not_created(tmp_path: Path) -> None:
    if filesystem_type(tmp_path) in MEMORY_FILESYSTEMS:
        pytest.skip("the temporary directory is itself on tmpfs here")
    with pytest.raises(InvalidArgument, match="is not on tmpfs"):
        SecretsDir(tmp_path / "a" / "b").open()
    assert not (tmp_path / "a").exists()


def test_filesystem_type_knows_tmpfs() -> None:
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm")
    assert MEMORY_FILESYSTEMS.get(filesystem_type(Path("/dev/shm"))) == "tmpfs"


def test_a_directory_swapped_after_the_check_cannot_redirect_a_secret(tmp_path: Path) -> None:
    directory = SecretsDir(tmp_path / "s", allow_disk=True)
    directory.open()
    os.rename(tmp_path / "s", tmp_path / "moved")
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "s")
    directory.reconcile(_listing({"db": "s1"}, {"app.conf": "c1"}), _fetch, print)
    assert (tmp_path / "moved" / "db").read_bytes() == b"one"
    assert (tmp_path / "moved" / "configs" / "app.conf").read_bytes() == b"conf"
    assert os.listdir(tmp_path / "elsewhere") == []


def test_the_default_directory_unusable_turns_delivery_off_a_named_one_stops_the_daemon(tmp_path: Path) -> None:
    from raftstore.api._serve import build_daemon

    if filesystem_type(tmp_path) in MEMORY_FILESYSTEMS:
        pytest.skip("the temporary directory is itself on tmpfs here")
    default = build_daemon(tmp_path / "d1", secrets_dir=SecretsDir(tmp_path / "s1"))
    default._open_secrets_dir()
    assert default.delivery is None and "is not on tmpfs" in (default.secrets_dir_problem or "")
    named = build_daemon(tmp_path / "d2", secrets_dir=SecretsDir(tmp_path / "s2"), secrets_dir_required=True)
    with pytest.raises(InvalidArgument, match="is not on tmpfs"):
        named._open_secrets_dir()


def test_a_full_tmpfs_leaves_no_partial_file(directory: SecretsDir, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    directory.reconcile(_listing({"api": "s2"}), _fetch, print)

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError):
        directory.reconcile(_listing({"api": "s2", "db": "s1"}), _fetch, print)
    monkeypatch.undo()
    assert sorted(os.listdir(directory.path)) == sorted([MARKER, "configs", "api"])
    directory.reconcile(_listing({"api": "s2", "db": "s1"}), _fetch, print)  # the next round, with room again
    assert (directory.path / "db").read_bytes() == b"one"

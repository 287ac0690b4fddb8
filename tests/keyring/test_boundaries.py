"""keyring's boundaries: it alone holds hazmat, imports nothing of ours, reads no clock, opens no file."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import raftstore.keyring

ROOT = Path(__file__).resolve().parent.parent.parent
KEYRING = ROOT / "keyring"


def _sources(folder: str) -> list[Path]:
    return sorted(path for path in (ROOT / folder).rglob("*.py") if ".venv" not in path.parts)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_only_keyring_mentions_hazmat() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("raftstore", "cli")
        for path in _sources(folder)
        if "cryptography.hazmat" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []


def test_keyring_imports_nothing_of_ours_but_itself() -> None:
    for path in _sources("keyring"):
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level > 1:
                    raise AssertionError(f"{path.name}: relative import above keyring")
                names = [node.module or ""] if node.level == 0 else []
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top not in ("raftstore", "cli", "keyring") or name.startswith("raftstore.keyring"), (path.name, name)
                assert top not in ("pickle", "shelve", "marshal", "socket", "pysyncobj", "time"), (path.name, name)


def test_keyring_reads_no_clock_and_opens_no_file() -> None:
    forbidden_calls = {"open", "now", "utcnow", "today", "time", "monotonic", "read_bytes", "write_bytes",
                       "read_text", "write_text"}
    for path in _sources("keyring"):
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                assert name not in forbidden_calls, f"{path.name}:{node.lineno} calls {name}()"


def test_public_table_matches_each_modules_all() -> None:
    table = raftstore.keyring._PUBLIC  # type: ignore[attr-defined]
    modules = {path.stem for path in KEYRING.glob("_*.py") if path.stem not in ("__init__", "_errors", "_lazy")}
    assert set(table) == modules
    for module, names in table.items():
        assert sorted(names) == sorted(importlib.import_module(f"raftstore.keyring.{module}").__all__), module


def test_every_exported_name_resolves_once() -> None:
    names = raftstore.keyring.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(raftstore.keyring, name) is not None, name
    assert "InvalidRecord" in names and "seal" in names and "KeySource" in names


def test_the_agreed_api_is_there() -> None:
    """The names other packages code against (the keyring brief)."""
    expected = """
        new_id is_valid_id to_base36
        Algorithm RecordKind DataKey seal open_record record_key_id entry_context snapshot_context snapshot_chunk_context HEADER_SIZE RECORD_VERSION
        UnlockKey
        Keyring KeyEncryptionKey wrap_keyring unwrap_keyring wrapped_kek_version wrap_data_key unwrap_data_key
        seal_private_key open_private_key
        ROOT_CN MANAGER_ROLE WORKER_ROLE MIN_CERT_VALIDITY DEFAULT_CERT_VALIDITY ROOT_VALIDITY RootCA create_root_ca
        load_root_ca root_ca_not_after generate_private_key public_key_fingerprint make_csr issue_certificate
        CertificateIdentity certificate_identity cross_sign verify_certificate_chain ca_digest
        private_key_matches_certificate
        JoinToken tokens_equal
    """.split()
    missing = [name for name in expected if name not in raftstore.keyring.__all__]
    assert missing == []
    assert raftstore.keyring.HEADER_SIZE == 18 and raftstore.keyring.RECORD_VERSION == 1


def test_repr_of_no_public_class_can_show_a_secret_field() -> None:
    """Dataclasses with a secret field declare it repr=False (belt and braces over custom reprs)."""
    import dataclasses

    for name in ("DataKey", "KeyEncryptionKey", "RootCA", "JoinToken"):
        cls = getattr(raftstore.keyring, name)
        for field in dataclasses.fields(cls):
            if field.name in ("secret", "key_pem"):
                assert not field.repr, f"{name}.{field.name}"

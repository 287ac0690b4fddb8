"""Pure cryptography for raftstore (installed as ``raftstore.keyring``).

Recipes only (STYLE rule 5): seal and open records, chain log entries to
their place, rotate and wrap DEKs, derive KEKs from unlock keys, issue and
verify certificates, mint and check join tokens. No algorithm or nonce choices leak to callers; nothing here does
network I/O, reads the clock or touches files. It imports nothing from the
rest of raftstore.

Names load on first use, so that a command that only needs the error classes
does not pay for importing the X.509 machinery.
"""

from __future__ import annotations

from ._lazy import surface


from ._errors import *  # noqa: F401,F403  (import-free leaf, always loaded)
from ._errors import __all__ as _errors_all

# The public names of each module, listed here so that __all__ needs no import
# (tests/keyring/test_boundaries.py checks this table against each module's __all__).
_PUBLIC = {
    "_ids": ["ID_LENGTH", "new_id", "is_valid_id", "to_base36"],
    "_seal": ["Algorithm", "RecordKind", "DataKey", "KeySource", "HEADER_SIZE", "RECORD_VERSION", "seal",
              "open_record", "record_key_id", "entry_context", "snapshot_context",
              "snapshot_chunk_context"],
    "_deks": ["Keyring", "KeyEncryptionKey", "wrap_keyring", "unwrap_keyring", "wrapped_kek_version",
              "wrap_data_key", "unwrap_data_key", "seal_private_key", "open_private_key"],
    "_log_chain": ["LogChain", "CHAIN_START", "CHAIN_TAG_SIZE", "chain_key", "chain_tag"],
    "_unlock": ["UnlockKey", "UNLOCK_KEY_PREFIX"],
    "_keypairs": ["split_pem_chain", "generate_private_key", "public_key_fingerprint", "certificate_fingerprint",
                  "private_key_matches_certificate", "make_csr", "sign_possession", "verify_possession"],
    "_chain": ["CertificateIdentity", "certificate_identity", "verify_certificate_chain"],
    "_ca": ["ROOT_CN", "CERT_BACKDATE", "ROOT_VALIDITY", "RootCA", "create_root_ca", "load_root_ca", "root_ca_not_after",
            "ca_digest"],
    "_certificates": ["MANAGER_ROLE", "WORKER_ROLE", "CLIENT_ROLE", "DAEMON_ROLE", "MIN_CERT_VALIDITY",
                      "DEFAULT_CERT_VALIDITY", "issue_certificate", "issue_daemon_certificate", "is_daemon_certificate",
                      "check_issued_certificate", "certificate_profile", "node_csr_key"],
    "_cross_sign": ["cross_sign", "root_csr", "check_cross_signed"],
    "_tokens": ["JoinToken", "tokens_equal", "JOIN_TOKEN_PREFIX"],
}
_LAZY = {name: f".{module}" for module, names in _PUBLIC.items() for name in names}

__all__ = [*_errors_all, *_LAZY, "surface"]


__getattr__, __dir__ = surface(__name__, _LAZY)

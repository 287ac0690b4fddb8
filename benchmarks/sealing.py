"""The cost of sealing, measured directly: CPU per write for the seal and the opens of one batch.

Throughput with and without sealing differs by less than a noisy 2-core
machine's run-to-run spread, so the harness also times the sealed path itself:
one seal on the proposing manager and one open on each of three managers, per
batch of N proposals, divided by N.
"""

from __future__ import annotations

import os
import timeit

import msgpack

from raftstore.keyring import Keyring, RecordKind, entry_context, open_record, record_key_id, seal

__all__ = ["sealing_cost_us_per_write"]


def sealing_cost_us_per_write(batch_size: int, payload: int, members: int = 3, number: int = 2000) -> float:
    keyring = Keyring.generate()
    cluster_id = "0" * 25
    batch = msgpack.packb(
        [[os.urandom(16), "2026-01-01T00:00:00.000000Z", [{"op": "put", "key": f"k{i}", "value": os.urandom(payload)}]]
         for i in range(batch_size)],
        use_bin_type=True,
    )
    entry_id = os.urandom(16)
    record = seal(keyring.active, RecordKind.ENTRY, cluster_id, entry_context(entry_id), batch)

    def sealed_path() -> None:
        seal(keyring.active, RecordKind.ENTRY, cluster_id, entry_context(entry_id), batch)
        for _ in range(members):
            record_key_id(record)
            open_record(keyring, RecordKind.ENTRY, cluster_id, entry_context(entry_id), record)

    seconds = timeit.timeit(sealed_path, number=number) / number
    return seconds / batch_size * 1e6

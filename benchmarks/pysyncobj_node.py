"""One node of the plain-pysyncobj peer: pysyncobj with its own file journal.

This is the library raftstore builds on, replicating the same writes
(``FileJournal``, pickle over plain TCP bound to 127.0.0.1) in one of two
configurations:

- ``default``: the settings as shipped. Commands wait in a queue for the
  append-entries timer (``appendEntriesPeriod``, 100 ms), which sends them in
  batches.
- ``tuned``: ``appendEntriesUseBatch=False``, the setting ``SyncObjConf``
  documents for the speed of a single request. Each command wakes the Raft
  thread through pysyncobj's pipe notifier and is sent at once, without
  waiting for the timer.

Neither fsyncs a write: pysyncobj's ``FileJournal`` appends into an mmap and
flushes it when the journal closes. The node serves the same request frames
as raftstore's control socket on a unix socket, so the benchmark drives it
with the same clients. Run as
``python -m benchmarks.pysyncobj_node SELF PARTNERS DIR [default|tuned]``.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from pysyncobj import SyncObj, SyncObjConf, replicated

from raftstore.net._frames import read_frame, write_frame


CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "tuned": {"appendEntriesUseBatch": False},
}


class Store(SyncObj):
    def __init__(self, self_addr: str, partners: list[str], directory: Path, configuration: str = "default") -> None:
        conf = SyncObjConf(
            journalFile=str(directory / "journal"),
            fullDumpFile=str(directory / "dump"),
            bindAddress=self_addr,
            dynamicMembershipChange=False,
            **CONFIGURATIONS[configuration],
        )
        super().__init__(self_addr, partners, conf=conf)
        self._data: dict[str, bytes] = {}

    @replicated
    def put(self, key: str, value: bytes) -> None:
        self._data[key] = value


def serve(store: Store, path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(128)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(store, conn), daemon=True).start()


def handle(store: Store, conn: socket.socket) -> None:
    try:
        while True:
            request = read_frame(conn)
            method, params = request["method"], request.get("params") or {}
            if method == "kv.put":
                done = threading.Event()
                outcome: list[Any] = []

                def callback(result: Any, error: Any) -> None:
                    outcome.append(error)
                    done.set()

                store.put(params["key"], params["value"], callback=callback)
                if not done.wait(30) or outcome[0] != 0:
                    write_frame(conn, {"ok": False, "error": {"code": "Unavailable", "message": f"failed: {outcome}"}})
                else:
                    write_frame(conn, {"ok": True, "result": None})
            elif method == "status":
                leader = store._getLeader()
                write_frame(conn, {"ok": True, "result": {"leader": str(leader) if leader else None,
                                                          "self": str(store.selfNode)}})
            else:
                write_frame(conn, {"ok": False, "error": {"code": "InvalidArgument", "message": method}})
    except (ConnectionError, OSError):
        pass
    finally:
        conn.close()


def main() -> None:
    self_addr, partners, directory = sys.argv[1], [p for p in sys.argv[2].split(",") if p], Path(sys.argv[3])
    configuration = sys.argv[4] if len(sys.argv) > 4 else "default"
    directory.mkdir(parents=True, exist_ok=True)
    store = Store(self_addr, partners, directory, configuration)
    print(f"pysyncobj node {self_addr} ({configuration}) pid {os.getpid()}", flush=True)
    serve(store, directory / "node.sock")


if __name__ == "__main__":
    main()

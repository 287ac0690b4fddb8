"""The raftstore command. Under construction."""


def main() -> None:
    raise SystemExit("raftstore: not built yet")

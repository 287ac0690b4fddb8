"""raftstore.telemetry."""

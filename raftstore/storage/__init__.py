"""raftstore.storage."""

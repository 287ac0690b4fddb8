"""raftstore.manager."""

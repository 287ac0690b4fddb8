"""raftstore.node."""

"""raftstore.state."""

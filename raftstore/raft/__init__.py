"""raftstore.raft."""

"""raftstore.api."""

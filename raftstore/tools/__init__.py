"""raftstore.tools."""

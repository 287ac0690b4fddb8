"""raftstore.net."""

"""``python -m raftstore`` runs the command line."""

from raftstore.cli import main

main()

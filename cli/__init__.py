"""The ``raftstore`` command (installed as ``raftstore.cli``): it mirrors ``docker swarm``.

Every command talks to the local daemon's control socket, or to the daemon
named by ``-H``; see ``raftstore --help``.
"""

from __future__ import annotations

import click

from ._common import connection_options
from ._daemon_cmd import daemon_cmd
from . import _bench, _ca, _check, _completion, _doctor, _kv, _node, _secret, _snapshot, _swarm, _version

__all__ = ["main", "cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="raftstore", prog_name="raftstore", message="%(prog)s %(version)s")
@connection_options
def cli() -> None:
    """raftstore: a Raft-replicated, encrypted cluster store, operated like docker swarm.

    \b
    Start a daemon per node, then form the cluster:
      raftstore daemon --data-dir /var/lib/raftstore &
      raftstore init --autolock --listen-addr 10.0.0.5:2377
      raftstore join-token manager
    """


cli.add_command(daemon_cmd)
_swarm.register(cli)
_node.register(cli)
_kv.register(cli)
_ca.register(cli)
_doctor.register(cli)
_secret.register(cli)
_bench.register(cli)
_check.register(cli)
_snapshot.register(cli)
_completion.register(cli)
_version.register(cli)


def main() -> None:
    cli(prog_name="raftstore")

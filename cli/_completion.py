"""``raftstore completion bash|zsh|fish``: the shell completion script.

Operators expect ``raftstore <TAB>`` to work as ``etcdctl`` and ``vault`` do.
We print click's own completion script rather than keeping one of our own, so
completion can never drift from the commands: the script only calls back into
``raftstore`` with ``_RAFTSTORE_COMPLETE`` set, and click answers from the
live command tree.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

__all__ = ["COMPLETE_VAR", "PROG_NAME", "SHELLS", "register"]

PROG_NAME = "raftstore"
# The variable click's main() looks for when the installed script is called
# as "raftstore" (f"_{prog_name}_COMPLETE", upper-cased); the script and the
# program must agree on it.
COMPLETE_VAR = "_RAFTSTORE_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


@click.command("completion")
@click.argument("shell", metavar="SHELL", type=click.Choice(SHELLS))
@click.pass_context
def completion_cmd(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    The script asks raftstore itself for completions, so it stays right
    when commands change. Bash needs version 4.4 or later.

    \b
    To install it, for bash add to ~/.bashrc:
      eval "$(raftstore completion bash)"
    for zsh add to ~/.zshrc (after compinit):
      eval "$(raftstore completion zsh)"
    for fish run once:
      raftstore completion fish > ~/.config/fish/completions/raftstore.fish

    \b
    Example:
      source <(raftstore completion bash)     # this shell only
    """
    completion_class = get_completion_class(shell)
    if completion_class is None:  # click dropped a shell it used to support
        raise click.UsageError(f"no completion support for {shell}", ctx=ctx)
    root = ctx.find_root().command
    click.echo(completion_class(root, {}, PROG_NAME, COMPLETE_VAR).source())


def register(group: click.Group) -> None:
    """Add ``completion`` to the ``raftstore`` group."""
    group.add_command(completion_cmd)

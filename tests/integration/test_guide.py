"""The operator's guide, run: every ```sh block of docs/guide.md, in document order, in one bash process.

Every command in the guide is run here, so the guide cannot drift from the code.

The blocks run with ``set -euo pipefail`` in a fresh directory, with this
virtualenv's ``bin/`` first on PATH and a free port for each ``NAME_PORT``
variable the guide defines as ``NAME_PORT=${NAME_PORT:-default}``. A block
preceded by ``<!-- needs: TOOL ... -->`` runs only where every TOOL is
installed (the external CA's CFSSL); elsewhere it is skipped, and says so. The bash
process leads its own process group, and every daemon the guide starts in the
background stays in it: whatever happens, the group is killed at the end.
A failing command fails the test with its block, the guide's line number, the
output since the block began and the tail of every daemon log.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from markdown_blocks import fenced_blocks
from raftstore.tools._local_cluster import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "guide.md"
TIMEOUT = 300.0  # the whole guide; about 50 s on an idle 2-core machine
PORT_DEFINITION = re.compile(r"^([A-Z][A-Z0-9_]*_PORT)=\$\{\1:-\d+\}", re.MULTILINE)
NEEDS = re.compile(r"^<!-- needs: ([\w .+-]+) -->$")
MARKER = "##### guide block {number} (docs/guide.md line {line})"


@dataclass(frozen=True)
class Block:
    number: int
    line: int  # of the opening fence, 1-based
    code: str
    needs: tuple[str, ...] = ()


def sh_blocks(text: str) -> list[Block]:
    """The ```sh blocks of a Markdown text in order; other fenced blocks are skipped."""
    blocks = []
    for b in fenced_blocks(text, "sh", "docs/guide.md"):
        needs = NEEDS.match(b.before)
        blocks.append(Block(b.number, b.line, b.code, tuple(needs.group(1).split()) if needs else ()))
    return blocks


def script(blocks: list[Block]) -> str:
    parts = ["set -euo pipefail", "trap 'echo \"##### failed with exit status $?: $BASH_COMMAND\"' ERR"]
    for block in blocks:
        marker = MARKER.format(number=block.number, line=block.line)
        parts.append(f"echo {marker!r}\" (at ${{SECONDS}} s)\"")
        if block.needs:
            found = " && ".join(f"command -v {tool} >/dev/null" for tool in block.needs)
            parts.append(f"if {found}; then\n{block.code}\n"
                         f"else echo '##### skipped: it needs {' '.join(block.needs)}, which is not installed'; fi")
        else:
            parts.append(block.code)
    parts.append("echo '##### guide done'")
    return "\n".join(parts) + "\n"


def free_ports(count: int) -> list[int]:
    """Distinct free ports from this worker's block, outside the range outgoing connections use."""
    return [free_port() for _ in range(count)]


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def kill_leftovers(root: Path) -> list[int]:
    """SIGKILL any process still running with its working directory under ``root`` (ours alone)."""
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == root or root in cwd.parents:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
            except ProcessLookupError:
                pass
    return killed


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def failure_report(blocks: list[Block], output: str, work: Path, why: str) -> str:
    started = [b for b in blocks if MARKER.format(number=b.number, line=b.line) in output]
    report = [why]
    if started:
        block = started[-1]
        marker = MARKER.format(number=block.number, line=block.line)
        since = output[output.rindex(marker) + len(marker):].strip("\n")
        report += [
            f"--- failing block {block.number} (docs/guide.md line {block.line}):",
            block.code,
            "--- its output:",
            "\n".join(since.splitlines()[-150:]),
        ]
    else:
        report += ["--- output:", output[-6000:]]
    for log in sorted(work.rglob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-25:]
        report += [f"--- {log.relative_to(work)} (last {len(tail)} lines):", *tail]
    return "\n".join(report)


def test_guide_blocks_are_well_formed() -> None:
    text = GUIDE.read_text()
    blocks = sh_blocks(text)
    assert len(blocks) >= 20, "the guide's runnable commands are in ```sh blocks"
    ports = PORT_DEFINITION.findall(text)
    assert ports and len(ports) == len(set(ports))
    used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*_PORT)\b", "\n".join(b.code for b in blocks)))
    assert used <= set(ports), f"ports used but not defined overridably: {sorted(used - set(ports))}"
    assert "docs/guide.md" in (ROOT / "README.md").read_text()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A directory with a short path: a unix socket's path is limited to 107 bytes, and pytest-xdist's tmp_path is deep."""
    path = Path(tempfile.mkdtemp(prefix="rsguide-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_every_command_in_the_guide(short_tmp: Path) -> None:
    tmp_path = short_tmp
    for tool in ("bash", "awk", "grep", "stat", "openssl", "curl"):
        if shutil.which(tool) is None:
            pytest.skip(f"the guide uses {tool}, which is not installed")
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "raftstore").exists(), f"no raftstore command beside {sys.executable}"

    text = GUIDE.read_text()
    blocks = sh_blocks(text)
    names = PORT_DEFINITION.findall(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTSTORE_")}
    env.update(dict(zip(names, map(str, free_ports(len(names))))))
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    # A command that forgets -H fails here instead of finding some other daemon.
    env["RAFTSTORE_HOST"] = f"unix://{tmp_path}/no-daemon-here.sock"
    env["HOME"] = str(tmp_path / "home")
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "home").mkdir()
    (tmp_path / "guide.sh").write_text(script(blocks))
    output_path = tmp_path / "output.txt"

    started = time.monotonic()
    with open(output_path, "wb") as output_file:
        proc = subprocess.Popen(
            ["bash", str(tmp_path / "guide.sh")],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the bash process leads a group that holds every daemon it starts
        )
    timed_out = False
    leftover = False
    try:
        try:
            returncode = proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            timed_out = True
            returncode = None
        leftover = group_alive(proc.pid)
    finally:
        kill_group(proc.pid)
        if proc.poll() is None:
            proc.wait(timeout=30)
        escaped = kill_leftovers(tmp_path)
    elapsed = time.monotonic() - started
    output = output_path.read_text(errors="replace")

    if timed_out:
        pytest.fail(failure_report(blocks, output, work, f"the guide did not finish within {TIMEOUT:.0f} s"))
    if returncode != 0 or "##### guide done" not in output:
        pytest.fail(failure_report(blocks, output, work, f"a command of the guide failed (bash exit {returncode})"))
    assert not leftover and not escaped, "the guide's clean-up left daemons running"
    for log in work.rglob("*.log"):
        assert "Traceback" not in log.read_text(errors="replace"), failure_report(
            blocks, output, work, f"{log.name} holds a traceback"
        )
    print(f"ran {len(blocks)} blocks of docs/guide.md in {elapsed:.1f} s")


def test_blocks_that_need_a_missing_tool_are_skipped(tmp_path: Path) -> None:
    """``<!-- needs: TOOL -->`` before a block: it runs where TOOL is installed and is skipped, saying so, elsewhere."""
    text = "\n".join([
        "```sh", "echo first", "```", "<!-- needs: bash -->", "", "```sh", "echo ran", "```",
        "<!-- needs: bash no-such-tool-here -->", "```sh", "false", "```",
    ])
    blocks = sh_blocks(text)
    assert [b.needs for b in blocks] == [(), ("bash",), ("bash", "no-such-tool-here")]
    (tmp_path / "guide.sh").write_text(script(blocks))
    run = subprocess.run(["bash", str(tmp_path / "guide.sh")], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ran\n" in run.stdout and "skipped: it needs bash no-such-tool-here" in run.stdout

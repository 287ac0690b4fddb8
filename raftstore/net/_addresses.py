"""Addresses: ``HOST:PORT`` and ``-H`` host URLs, parsed in one place, and the TCP listening socket.

A ``HOST:PORT`` takes an IPv6 host in brackets (``[::1]:2377``); a bare host
takes the caller's default port where one applies (2377 for the cluster
port). A ``-H`` host is ``unix:///path/to/raftstore.sock`` or
``tcp://HOST:PORT``. Every refusal is one ``InvalidArgument`` line that quotes
what was given.
"""

from __future__ import annotations

import ipaddress
import socket

from ..keyring import InvalidArgument

__all__ = ["split_host_port", "listen_tcp", "is_loopback_host", "parse_host"]


def split_host_port(address: str, default_port: int | None = None) -> tuple[str, int]:
    """Parse HOST:PORT (IPv6 in brackets); a bare host takes ``default_port``."""
    text = address.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not port_text:
        if default_port is None:
            raise InvalidArgument(f"invalid address {address!r}: expected HOST:PORT")
        port_text = str(default_port)
    try:
        port = int(port_text)
    except ValueError:
        raise InvalidArgument(f"invalid port in {address!r}") from None
    if not host or not 0 < port < 65536:
        raise InvalidArgument(f"invalid address {address!r}: expected HOST:PORT")
    return host, port


def listen_tcp(address: str, backlog: int) -> socket.socket:
    """A listening TCP socket on HOST:PORT, or one InvalidArgument line saying why not."""
    host, port = split_host_port(address)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        raise InvalidArgument(f"cannot listen on {address}: {error.strerror}") from None
    sock.listen(backlog)
    return sock


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback address: where plain TCP reaches only this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_host(host: str) -> tuple[str, str]:
    """``unix:///path`` → ("unix", "/path"); ``tcp://h:p`` → ("tcp", "h:p")."""
    if host.startswith("unix://"):
        return "unix", host[len("unix://") :]
    if host.startswith("tcp://"):
        address = host[len("tcp://") :].rstrip("/")
        split_host_port(address)
        return "tcp", address
    raise InvalidArgument(f"invalid host {host!r}: use unix:///path/to/raftstore.sock or tcp://HOST:PORT")

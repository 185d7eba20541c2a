"""Helpers for the tests that launch processes (torchrun, accelerate launch)."""

import socket


def free_port() -> int:
    """A TCP port nobody listens on now, for a launcher's rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

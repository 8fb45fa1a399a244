"""Run the prediction API with uvicorn on the loopback interface only."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from typing import Any

__all__ = ["check_loopback", "bind_loopback", "serve_forever", "BackgroundServer"]

log = logging.getLogger(__name__)


def check_loopback(host: str) -> str:
    """Refuse anything but a loopback address (the API is for local experiments)."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"advlab serve only listens on loopback addresses (127.0.0.1, ::1), got {host!r}")
    return host


def bind_loopback(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket on ``host:port`` (``port=0``: a free port chosen by the OS)."""
    host = check_loopback(host)
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"port must be in [0, 65535], got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as e:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _server(app: Any, log_level: str) -> Any:
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off")
    return uvicorn.Server(config)


def serve_forever(app: Any, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning") -> None:
    """Serve ``app`` until interrupted (blocking)."""
    sock = bind_loopback(host, port)
    try:
        _server(app, log_level).run(sockets=[sock])
    finally:
        sock.close()


class BackgroundServer:
    """Serve an app from a background thread; a context manager for tests and notebooks.

    ``with BackgroundServer(app) as srv: HTTPOracle(srv.url).predict(x)``. With
    ``port=0`` the OS picks a free loopback port (no race: the socket is bound first).
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0,
                 log_level: str = "warning", start_timeout: float = 20.0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.log_level = log_level
        self.start_timeout = start_timeout
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> BackgroundServer:
        self._sock = bind_loopback(self.host, self.port)
        self.port = int(self._sock.getsockname()[1])
        self._server = _server(self.app, self.log_level)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        daemon=True, name="advlab-serve")
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the prediction server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Run the dashboard under uvicorn on a socket bound here, so that ``--port 0`` (any free
port) can be printed as the real URL before serving, and never found by binding and closing.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import time

from loopctl.errors import LoopctlError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    db: str,
    host: str = "127.0.0.1",
    port: int = 8050,
    allow_remote_actions: bool = False,
    operator: str | None = None,
) -> int:
    started = time.monotonic()
    try:
        import uvicorn

        from loopctl.dashboard.actions import Gate
        from loopctl.dashboard.app import create_app
    except ImportError as exc:
        raise LoopctlError(
            f"the dashboard needs Starlette and uvicorn ({exc}): pip install 'loopctl[dashboard]'"
        ) from None
    remote = not is_loopback(host)
    if remote and not allow_remote_actions:
        gate = Gate.new(
            False,
            f"it listens on {host}, beyond this machine, and was not started with "
            "--allow-remote-actions; use the CLI (loopctl approve ...) or a dashboard on "
            "127.0.0.1",
        )
    else:
        gate = Gate.new(True)
    app = create_app(db, gate, operator)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise LoopctlError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)  # from here on browsers wait in the backlog until uvicorn accepts
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    url = f"http://{shown}:{bound}/"
    print(f"dashboard for {db} at {url}", flush=True)
    if gate.actions:
        print(f"operator actions need the token {gate.token}", flush=True)
        print(f"open {url}?token={gate.token}", flush=True)
    else:
        print(f"read-only: {gate.why_read_only}", flush=True)
    if remote and gate.actions:
        print(
            "warning: actions are allowed beyond loopback; the token travels unencrypted",
            file=sys.stderr,
            flush=True,
        )
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, access_log=False)
    server = uvicorn.Server(config)
    print(f"ready in {time.monotonic() - started:.2f} s", flush=True)
    server.run(sockets=[sock])
    return 0

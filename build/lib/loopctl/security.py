"""CURVE keys and the allow-list of drivers, for campaigns reachable beyond this machine.

ZeroMQ's CURVE handshake happens before any message reaches the controller, so
a driver whose public key is not in the allow-list cannot register, receive a
task or submit a result: the database never sees it. A key turned away by the
allow-list is logged with its fingerprint so an operator can tell which device
it was. A driver with no key or the wrong controller key fails the handshake
before its key is known and never reaches the allow-list: the controller's
socket monitor logs those (``Controller._watch_handshakes``).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from loopctl.errors import LoopctlError

log = logging.getLogger("loopctl.security")

LOOPBACK = re.compile(
    r"^(tcp://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:.*)?|ipc://.*|inproc://.*)$"
)


def is_loopback(endpoint: str) -> bool:
    return bool(LOOPBACK.match(endpoint))


def fingerprint(public_z85: bytes) -> str:
    """Short, stable name of a public key for logs (sha256 of its z85 text)."""
    return hashlib.sha256(public_z85).hexdigest()[:16]


def generate(name: str, out: Path) -> tuple[Path, Path]:
    """NAME.key (public: give it to the other side) and NAME.key_secret (keep it private)."""
    out.mkdir(parents=True, exist_ok=True)
    for suffix in (".key", ".key_secret"):
        if (out / f"{name}{suffix}").exists():
            raise LoopctlError(f"{out / (name + suffix)} exists; not overwriting a key")
    public, secret = zmq.auth.create_certificates(str(out), name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)


def load_keypair(path: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) from a NAME.key_secret file."""
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise LoopctlError(f"{path}: not a readable CURVE secret key file ({exc})") from None
    if secret is None:
        raise LoopctlError(f"{path}: holds only a public key; give the NAME.key_secret file")
    return public, secret


def load_public(path: str | Path) -> bytes:
    try:
        public, _ = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise LoopctlError(f"{path}: not a readable CURVE public key file ({exc})") from None
    return public


@dataclass(frozen=True)
class Curve:
    """The controller's side: its key pair and the folder of authorised driver keys."""

    secret_key_file: Path
    authorized_dir: Path

    def allowed(self) -> set[bytes]:
        if not self.authorized_dir.is_dir():
            raise LoopctlError(f"{self.authorized_dir}: no such folder of authorised driver keys")
        return {load_public(p) for p in sorted(self.authorized_dir.glob("*.key"))}


def _log_refusal(fingerprint: str) -> None:
    log.warning("refused a driver with an unknown CURVE key (fingerprint %s)", fingerprint)


class _AllowList:
    def __init__(self, keys: set[bytes], refused: Callable[[str], None]) -> None:
        self.keys = keys
        self.refused = refused

    def callback(self, domain: str, key: bytes) -> bool:
        if key in self.keys:
            return True
        self.refused(fingerprint(key))
        return False


def secure_server(
    ctx: Any, sock: Any, curve: Curve, refused: Callable[[str], None] = _log_refusal
) -> ThreadAuthenticator:
    """Make ``sock`` a CURVE server that admits only the allow-listed keys.

    ``refused`` gets the fingerprint of each key turned away, on the authenticator's
    thread: the controller rate-limits these lines with its other refusals."""
    public, secret = load_keypair(curve.secret_key_file)
    keys = curve.allowed()
    auth = ThreadAuthenticator(zmq.Context.shadow(ctx.underlying), log=log)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=_AllowList(keys, refused))
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
    log.info("CURVE on: %d authorised driver keys", len(keys))
    return auth


def secure_client(sock: Any, key_file: str | Path, server_key_file: str | Path) -> None:
    """Make a driver's socket a CURVE client of the controller whose public key is given."""
    public, secret = load_keypair(key_file)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = load_public(server_key_file)

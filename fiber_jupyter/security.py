"""Who may talk to a pool: ZeroMQ connection authentication with the pool's secret.

We authenticate connections, not messages. A worker proves it holds the pool's
secret during the ZeroMQ handshake (the ZAP protocol, answered by the master's
I/O thread); a peer that fails never gets a single frame delivered to our code,
so nothing it sends can reach the unpickler. This costs nothing per message,
where signing every frame with HMAC-SHA256 would cost ~5 ms per 8 MB array on
both sides (measured at ~1.7 GB/s here).

Local pools use the PLAIN mechanism over loopback, where only the local root
could observe the password. Pools whose workers are on other hosts (pods)
use CURVE: every connection is encrypted, the master proves its identity
with its server key, and workers prove theirs with the pool's client key,
which they get with the rest of the pool's credentials (a Kubernetes
Secret). Either way a worker receives one opaque token.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass, field
from typing import Optional

import zmq
import zmq.utils.z85

log = logging.getLogger(__name__)

# Fixed by the ZAP specification (ZeroMQ RFC 27).
_ZAP_ENDPOINT = "inproc://zeromq.zap.01"
_ZAP_VERSION = b"1.0"

ZAP_DOMAIN = "fiber_jupyter"
USERNAME = "worker"
CURVE_PREFIX = "curve:"
_Z85_KEY_LENGTH = 40


def new_secret() -> str:
    """A fresh pool secret: 256 random bits, hex so it fits any transport."""
    return secrets.token_hex(32)


@dataclass(frozen=True)
class Credentials:
    """A pool's keys: what its workers are given (``token``) and what the master checks.

    PLAIN: the token is the secret itself. CURVE: the token is the master's
    public key plus the workers' key pair, Z85-encoded, after "curve:".
    """

    token: str = field(repr=False)
    server_secret_key: Optional[bytes] = field(default=None, repr=False)

    @property
    def encrypted(self) -> bool:
        return self.server_secret_key is not None


def new_credentials(encrypted: bool) -> Credentials:
    """Fresh credentials for a pool; ``encrypted`` for workers on other hosts."""
    if not encrypted:
        return Credentials(new_secret())
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    token = CURVE_PREFIX + (server_public + client_public + client_secret).decode()
    return Credentials(token, server_secret)


def _curve_keys(token: str) -> tuple:
    """(master public, worker public, worker secret) keys of a CURVE token, Z85 bytes."""
    keys = token[len(CURVE_PREFIX):].encode()
    if len(keys) != 3 * _Z85_KEY_LENGTH:
        raise ValueError("malformed CURVE credentials")
    return tuple(keys[i:i + _Z85_KEY_LENGTH] for i in range(0, len(keys), _Z85_KEY_LENGTH))


class ConnectionGuard:
    """The master side: answers ZAP requests for one pool's ZeroMQ context.

    Owned by the master's I/O thread, which polls :attr:`socket` with its other
    sockets and calls :meth:`handle` when it is readable. (pyzmq's own
    Authenticator logs passwords at debug level; ours never logs the secret.)
    """

    def __init__(self, context: zmq.Context, credentials: Credentials) -> None:
        self._credentials = credentials
        if credentials.encrypted:
            # ZAP hands over a CURVE client's public key as 32 raw bytes.
            self._client_key = zmq.utils.z85.decode(_curve_keys(credentials.token)[1])
        else:
            self._password = credentials.token.encode()
        self.socket = context.socket(zmq.REP)
        self.socket.linger = 0
        self.socket.bind(_ZAP_ENDPOINT)

    def protect(self, server: zmq.Socket) -> None:
        """Require every peer of ``server`` to authenticate (and, with CURVE, to encrypt)."""
        if self._credentials.encrypted:
            server.curve_server = True
            server.curve_secretkey = self._credentials.server_secret_key
        else:
            server.plain_server = True
        server.zap_domain = ZAP_DOMAIN.encode()

    def handle_pending(self) -> None:
        """Answer every pending ZAP request (call when :attr:`socket` is readable)."""
        while self.socket.poll(0):
            self._answer(self.socket.recv_multipart())

    def _answer(self, request: list) -> None:
        request_id = request[1] if len(request) > 1 else b""
        if self._accepts(request):
            reply = [_ZAP_VERSION, request_id, b"200", b"OK", USERNAME.encode(), b""]
        else:
            log.warning("refused a connection without the pool's secret")
            reply = [_ZAP_VERSION, request_id, b"400", b"not authorized", b"", b""]
        self.socket.send_multipart(reply)

    def _accepts(self, request: list) -> bool:
        # [version, request id, domain, address, identity, mechanism, *credentials]
        if len(request) < 7 or request[0] != _ZAP_VERSION or request[2] != ZAP_DOMAIN.encode():
            return False
        mechanism, credentials = request[5], request[6:]
        if self._credentials.encrypted:
            return (mechanism == b"CURVE" and len(credentials) == 1
                    and hmac.compare_digest(credentials[0], self._client_key))
        return (mechanism == b"PLAIN" and len(credentials) == 2
                and credentials[0] == USERNAME.encode()
                and hmac.compare_digest(credentials[1], self._password))

    def close(self) -> None:
        self.socket.close()


def authenticate(client: zmq.Socket, token: str) -> None:
    """The worker side: present the pool's credentials when ``client`` connects."""
    if token.startswith(CURVE_PREFIX):
        server_public, client_public, client_secret = _curve_keys(token)
        client.curve_serverkey = server_public
        client.curve_publickey = client_public
        client.curve_secretkey = client_secret
        return
    client.plain_username = USERNAME.encode()
    client.plain_password = token.encode()

"""Specification: a peer without the pool's secret cannot make anyone unpickle anything."""

from __future__ import annotations

import pickle
import socket

import psutil
import pytest
import zmq
import zmq.utils.monitor

import fiber_jupyter
from fiber_jupyter import protocol, security

from . import tasks
from .conftest import wait_for, worker_pids


class _CreatesFile:
    """A pickle that, when loaded, creates a file: proof of code execution."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _listening_ports() -> set:
    return {c.laddr.port for c in psutil.Process().net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN}


@pytest.fixture
def pool_and_address():
    before = _listening_ports()
    pool = fiber_jupyter.Pool(2, name="guarded")
    (port,) = _listening_ports() - before
    yield pool, f"tcp://127.0.0.1:{port}"
    pool.terminate()
    pool.join()


def _zmq_attacker(address: str, password: str) -> zmq.Socket:
    attacker = zmq.Context.instance().socket(zmq.DEALER)
    attacker.linger = 0
    security.authenticate(attacker, password)
    attacker.identity = b"w0"  # impersonate the first worker
    attacker.connect(address)
    return attacker


def _evil_frames(proof) -> list:
    evil = pickle.dumps(_CreatesFile(str(proof)))
    return [[protocol.Done.KIND, evil, evil], [protocol.Hello.KIND, evil], [b"garbage"] * 3]


def test_a_zmq_peer_with_a_wrong_secret_is_refused_and_nothing_it_sends_is_loaded(
        pool_and_address, tmp_path, caplog):
    pool, address = pool_and_address
    running = pool.map_async(tasks.slow_square, range(50), chunksize=1)
    proof = tmp_path / "pwned"
    attacker = _zmq_attacker(address, "0" * 64)
    for frames in _evil_frames(proof):
        try:
            attacker.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            pass  # no authenticated connection exists, so nothing can be delivered
    wait_for(lambda: "refused a connection without the pool's secret" in caplog.text)
    assert running.get(timeout=60) == [x * x for x in range(50)]
    assert pool.map(tasks.square, range(5)) == [0, 1, 4, 9, 16]
    assert not proof.exists()
    attacker.close()


def test_raw_bytes_truncated_and_oversized_frames_on_the_port_change_nothing(
        pool_and_address, tmp_path):
    pool, address = pool_and_address
    running = pool.map_async(tasks.slow_square, range(50), chunksize=1)
    proof = tmp_path / "pwned"
    port = int(address.rsplit(":", 1)[1])
    evil = pickle.dumps(_CreatesFile(str(proof)))
    # A ZMTP 3 greeting announcing the NULL mechanism, then frames: the pickle,
    # a truncated greeting, noise, and a frame claiming 2**63 bytes.
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" * 32
    payloads = [evil, greeting + evil, greeting[:5], b"\x02\xff" * 10_000,
                greeting + b"\x06" + (2**63).to_bytes(8, "big") + evil]
    for payload in payloads:
        _send_raw(port, payload)
    assert running.get(timeout=60) == [x * x for x in range(50)]
    assert not proof.exists()


def _send_raw(port: int, payload: bytes) -> None:
    """Send bytes and read until the master drops the connection (it never waits forever)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            raw.sendall(payload)
            raw.shutdown(socket.SHUT_WR)
            while raw.recv(4096):
                pass
        except TimeoutError:
            raise AssertionError("the master kept a garbage connection open") from None
        except OSError:  # reset or already closed by the master: dropped, as it should be
            return


def test_workers_listen_on_no_port():
    pool = fiber_jupyter.Pool(2)
    try:
        pool.map(tasks.square, range(4))
        pids = worker_pids()
        assert len(pids) == 2
        for pid in pids:
            listening = [c for c in psutil.Process(pid).net_connections(kind="inet")
                         if c.status == psutil.CONN_LISTEN]
            assert listening == []
    finally:
        pool.terminate()
        pool.join()


def test_the_master_listens_on_loopback_only(pool_and_address):
    _, address = pool_and_address
    port = int(address.rsplit(":", 1)[1])
    (listener,) = [c for c in psutil.Process().net_connections(kind="tcp")
                   if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    assert listener.laddr.ip == "127.0.0.1"


def test_the_secret_is_not_on_any_worker_command_line_or_environment():
    pool = fiber_jupyter.Pool(1)
    try:
        pool.map(tasks.square, range(2))
        secret = pool._scheduler._credentials.token  # the one place a test may read it
        (pid,) = worker_pids()
        worker = psutil.Process(pid)
        assert secret not in " ".join(worker.cmdline())
        assert secret not in "".join(worker.environ().values())
    finally:
        pool.terminate()
        pool.join()


PLAIN_POOL = security.Credentials("s3cret")


class TestConnectionGuard:
    """The ZAP handler alone: only the pool's own credentials complete a handshake."""

    def _handshake(self, client_token, server=PLAIN_POOL) -> tuple:
        """Connect a client; (the client's handshake outcome, whether its message arrived)."""
        context = zmq.Context()
        guard = security.ConnectionGuard(context, server)
        server_socket = context.socket(zmq.ROUTER)
        guard.protect(server_socket)
        port = server_socket.bind_to_random_port("tcp://127.0.0.1")
        client = context.socket(zmq.DEALER)
        if client_token is not None:
            security.authenticate(client, client_token)
        monitor = client.get_monitor_socket()
        client.connect(f"tcp://127.0.0.1:{port}")
        client.send(b"ping")
        outcome = self._await_handshake(guard, monitor)
        arrived = bool(server_socket.poll(1000)) if outcome == "HANDSHAKE_SUCCEEDED" else \
            bool(server_socket.poll(0))
        client.disable_monitor()
        for each in (monitor, client, server_socket):
            each.close(linger=0)
        guard.close()
        context.term()
        return outcome, arrived

    def _await_handshake(self, guard, monitor) -> str:
        poller = zmq.Poller()
        poller.register(guard.socket, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        while True:
            ready = dict(poller.poll(30_000))
            assert ready, "no handshake outcome within 30 s"
            if guard.socket in ready:
                guard.handle_pending()
            if monitor in ready:
                event = zmq.utils.monitor.recv_monitor_message(monitor)["event"]
                if "HANDSHAKE" in event.name:
                    return event.name

    def test_the_right_secret_is_accepted(self):
        assert self._handshake("s3cret") == ("HANDSHAKE_SUCCEEDED", True)

    def test_a_wrong_secret_is_refused_by_the_guard(self):
        assert self._handshake("s3cre7") == ("HANDSHAKE_FAILED_AUTH", False)

    def test_a_peer_without_credentials_fails_the_handshake(self):
        outcome, arrived = self._handshake(None)
        assert outcome.startswith("HANDSHAKE_FAILED")
        assert not arrived

    def test_curve_credentials_of_the_pool_are_accepted(self):
        pool = security.new_credentials(encrypted=True)
        assert self._handshake(pool.token, pool) == ("HANDSHAKE_SUCCEEDED", True)

    def test_curve_with_another_pools_worker_key_is_refused_by_the_guard(self):
        pool, other = (security.new_credentials(encrypted=True) for _ in range(2))
        prefix = len(security.CURVE_PREFIX)
        forged = pool.token[:prefix + 40] + other.token[prefix + 40:]
        assert self._handshake(forged, pool) == ("HANDSHAKE_FAILED_AUTH", False)

    def test_a_worker_that_does_not_know_the_master_key_never_connects(self):
        pool, impostor = (security.new_credentials(encrypted=True) for _ in range(2))
        outcome, arrived = self._handshake(impostor.token, pool)
        assert outcome.startswith("HANDSHAKE_FAILED") and not arrived

    def test_an_encrypted_pool_refuses_plain_passwords_even_its_own_token(self):
        pool = security.new_credentials(encrypted=True)
        outcome, arrived = self._handshake("s3cret", pool)
        assert outcome.startswith("HANDSHAKE_FAILED") and not arrived

    def test_curve_tokens_do_not_show_their_keys_in_reprs(self):
        pool = security.new_credentials(encrypted=True)
        assert pool.token not in repr(pool)
        assert pool.token[-40:] not in repr(pool)

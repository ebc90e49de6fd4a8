"""The side panel reaches the kernel only through Jupyter's server, which refuses anyone
without the user's credentials: the REST API and the kernel's websocket alike.

(What a client that reaches the kernel without the kernel's key can do is
checked in tests/jupyter/test_control.py: nothing.)
"""

from __future__ import annotations

import base64
import http.client
import os
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest


@pytest.fixture
def kernel_id(lab_server):
    started = lab_server.api("POST", "/api/kernels")
    yield started["id"]
    lab_server.api("DELETE", f"/api/kernels/{started['id']}")


def status_of(lab_server, path: str, headers: dict) -> int:
    """The HTTP status of a GET, as a raw request (a websocket upgrade included)."""
    address = urlsplit(lab_server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.close()
        return response.status
    finally:
        connection.close()


def websocket_upgrade() -> dict:
    return {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}


def test_the_rest_api_refuses_a_request_without_the_token(lab_server, kernel_id):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{lab_server.url}/api/kernels", timeout=10)
    refused.value.close()
    assert refused.value.code == 403
    assert status_of(lab_server, "/api/kernels",
                     {"Authorization": "token not-the-token"}) == 403
    assert status_of(lab_server, "/api/kernels",
                     {"Authorization": f"token {lab_server.token}"}) == 200


def test_the_kernels_websocket_refuses_an_upgrade_without_the_token(lab_server, kernel_id):
    channels = f"/api/kernels/{kernel_id}/channels"
    assert status_of(lab_server, channels, websocket_upgrade()) == 403
    assert status_of(lab_server, f"{channels}?token={lab_server.token}",
                     websocket_upgrade()) == 101

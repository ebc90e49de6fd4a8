"""Specification: where a notebook pod finds itself."""

from __future__ import annotations

from fiber_jupyter.backends.kubernetes.config import own_pod_name


def test_the_pod_name_is_the_hostname_in_an_ordinary_pod():
    assert own_pod_name({"HOSTNAME": "jupyter-ada"}) == "jupyter-ada"


def test_pod_name_from_the_downward_api_wins_over_a_host_network_pods_hostname():
    assert own_pod_name({"HOSTNAME": "node-7", "POD_NAME": "jupyter-ada"}) == "jupyter-ada"

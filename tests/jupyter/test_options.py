"""Specification: the magics' options are parsed, never evaluated, and refused with a reason."""

from __future__ import annotations

from argparse import ArgumentTypeError

import pytest
from IPython.core.error import UsageError

from fiber_jupyter.backends.kubernetes import config as kubernetes_config
from fiber_jupyter.jupyter import options


@pytest.mark.parametrize("convert, text, value", [
    (options.positive_int, "1", 1),
    (options.positive_int, "512", 512),
    (options.non_negative_int, "0", 0),
    (options.adapt_bounds, "1:8", (1, 8)),
    (options.adapt_bounds, "4:4", (4, 4)),
    (options.cpu_quantity, "2", "2"),
    (options.cpu_quantity, "0.5", "0.5"),
    (options.cpu_quantity, "500m", "500m"),
    (options.memory_quantity, "4Gi", "4Gi"),
    (options.memory_quantity, "1.5G", "1.5G"),
    (options.memory_quantity, "1048576", "1048576"),
    (options.image_reference, "ghcr.io/org/worker:1.0", "ghcr.io/org/worker:1.0"),
    (options.namespace_name, "team-a", "team-a"),
    (options.variable_name, "es_pool", "es_pool"),
    (options.pool_name, "es-1.b_2", "es-1.b_2"),
])
def test_accepted(convert, text, value):
    assert convert(text) == value


@pytest.mark.parametrize("convert, text, message", [
    (options.positive_int, "0", "must be a positive integer, got '0'"),
    (options.positive_int, "-2", "must be a positive integer, got '-2'"),
    (options.positive_int, "abc", "must be a positive integer, got 'abc'"),
    (options.positive_int, "2**40", "must be a positive integer, got '2**40'"),
    (options.positive_int, "1_000", "must be a positive integer, got '1_000'"),
    (options.non_negative_int, "-1", "must be a non-negative integer, got '-1'"),
    (options.adapt_bounds, "x", "must be MIN:MAX, two positive integers like 1:8, got 'x'"),
    (options.adapt_bounds, "8", "must be MIN:MAX, two positive integers like 1:8, got '8'"),
    (options.adapt_bounds, "8:4", "MIN 8 is larger than MAX 4 in '8:4'"),
    (options.adapt_bounds, "0:4", "MIN must be a positive integer, got '0' in '0:4'"),
    (options.adapt_bounds, ":4", "MIN must be a positive integer, got '' in ':4'"),
    (options.adapt_bounds, "1:x", "MAX must be a positive integer, got 'x' in '1:x'"),
    (options.adapt_bounds, "1:8:9", "MAX must be a positive integer, got '8:9' in '1:8:9'"),
    (options.cpu_quantity, "0", "must be a positive number of cores like 2, 0.5 or 500m, got '0'"),
    (options.cpu_quantity, "lots", "must be a positive number of cores like 2, 0.5 or 500m, "
                                   "got 'lots'"),
    (options.memory_quantity, "4GB", "must be a positive amount like 512Mi, 4Gi or 2G, "
                                     "got '4GB'"),
    (options.memory_quantity, "0Mi", "must be a positive amount like 512Mi, 4Gi or 2G, "
                                     "got '0Mi'"),
    (options.image_reference, "my image", "must be a container image like python:3.11-slim, "
                                          "got 'my image'"),
    (options.namespace_name, "Team_A", "must be a Kubernetes namespace (at most 63 lowercase "
                                       "letters, digits and '-'), got 'Team_A'"),
    (options.variable_name, "1x", "must be a Python variable name, got '1x'"),
    (options.variable_name, "lambda", "must be a Python variable name, got 'lambda'"),
    (options.pool_name, "my pool", "must be letters, digits, '_', '.' or '-', got 'my pool'"),
])
def test_refused_with_what_was_expected(convert, text, message):
    with pytest.raises(ArgumentTypeError) as caught:
        convert(text)
    assert str(caught.value) == message


def test_the_default_backend_is_local_outside_a_cluster():
    assert options.resolve_backend(None, {}) == "local"
    assert options.resolve_backend("local", {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}) == "local"


def test_a_backend_that_is_not_installed_is_a_usage_error_naming_the_available_ones():
    with pytest.raises(UsageError) as caught:
        options.resolve_backend("yarn", {})
    assert str(caught.value) == (
        "backend 'yarn' is not available; available backends: kubernetes, local")


def test_in_a_pod_without_a_service_account_the_default_is_local(monkeypatch, tmp_path):
    monkeypatch.setattr(kubernetes_config, "SERVICE_ACCOUNT_DIR", tmp_path)
    assert options.resolve_backend(None, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}) == "local"


def test_in_a_pod_with_a_service_account_the_default_is_kubernetes(monkeypatch, tmp_path):
    (tmp_path / "token").write_text("a service account token")
    monkeypatch.setattr(kubernetes_config, "SERVICE_ACCOUNT_DIR", tmp_path)
    assert options.resolve_backend(None, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}) == "kubernetes"
    assert options.resolve_backend(None, {}) == "local"


def test_resource_hints_are_refused_for_the_local_backend_and_named():
    options.check_resource_hints("local", {"cpu": None, "memory": None, "name": "pool"})
    with pytest.raises(UsageError) as caught:
        options.check_resource_hints("local", {"cpu": "2", "gpu": 1, "namespace": None})
    assert str(caught.value) == "--cpu, --gpu apply to remote backends only, not to backend 'local'"


def test_resource_hints_pass_for_a_remote_backend():
    options.check_resource_hints("kubernetes", {"cpu": "2", "memory": "4Gi", "image": "x:1"})



def test_a_pod_template_file_is_read_as_yaml_or_json(tmp_path):
    (tmp_path / "t.yaml").write_text("spec:\n  hostNetwork: true\n")
    (tmp_path / "t.json").write_text('{"spec": {"priorityClassName": "batch"}}')
    assert options.pod_template_file(str(tmp_path / "t.yaml")) == {"spec": {"hostNetwork": True}}
    assert options.pod_template_file(str(tmp_path / "t.json")) == {
        "spec": {"priorityClassName": "batch"}}


@pytest.mark.parametrize("content, message", [
    (None, "cannot read pod template '{path}': No such file or directory"),
    ("spec: [unclosed", "pod template '{path}' is not YAML or JSON: while parsing"),
    ("- a list", "pod template '{path}' must be a mapping such as "
                 "'spec: {{priorityClassName: batch}}', got list"),
])
def test_a_pod_template_that_is_not_a_mapping_is_refused_naming_the_file(tmp_path, content,
                                                                          message):
    path = tmp_path / "template.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ArgumentTypeError) as caught:
        options.pod_template_file(str(path))
    assert str(caught.value).startswith(message.format(path=path))


def test_hints_with_two_words_are_named_as_their_flags():
    with pytest.raises(UsageError) as caught:
        options.check_resource_hints("local", {"pod_template": {"spec": {}}, "context": "lab"})
    assert str(caught.value) == ("--pod-template, --context apply to remote backends only, "
                                 "not to backend 'local'")

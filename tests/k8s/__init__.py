"""A Kubernetes stand-in (HTTP API + process kubelet) and its specification tests."""

"""Adapter for ipyparallel: a local cluster of n engines behind a LoadBalancedView.

use_cloudpickle() is enabled because that is how notebook users make
ipyparallel ship the globals their functions use (BASELINES.md).
"""

import logging

import ipyparallel


class _Handle:
    """LoadBalancedView (apply_sync/map_sync) seen through the harness interface."""

    def __init__(self, cluster, client):
        self.cluster = cluster
        self.client = client
        self.view = client.load_balanced_view()

    def apply(self, fn, args):
        """Run one call on whichever engine is free and wait for it."""
        return self.view.apply_sync(fn, *args)

    def map(self, fn, iterable):
        """LoadBalancedView.map with its default chunking (one task per message)."""
        return list(self.view.map_sync(fn, list(iterable)))

    def close(self):
        """Disconnect, then stop the controller and engines."""
        self.client.close()
        self.cluster.stop_cluster_sync()


def start(n):
    """Start a controller and n engines, wait for them, switch to cloudpickle."""
    cluster = ipyparallel.Cluster(n=n, log_level=logging.WARNING)
    client = cluster.start_and_connect_sync()
    client[:].use_cloudpickle()
    return _Handle(cluster, client)

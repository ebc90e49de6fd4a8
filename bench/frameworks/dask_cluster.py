"""Adapter for Dask distributed: LocalCluster of n single-threaded worker processes.

Tasks are submitted with pure=False: identical calls such as many
time.sleep(0.001) must each run, not be deduplicated by Dask's key hashing.
"""

from dask.distributed import Client, LocalCluster


class _Handle:
    """Client API (submit/map/gather) seen through the harness interface."""

    def __init__(self, cluster, client):
        self.cluster = cluster
        self.client = client

    def apply(self, fn, args):
        """Submit one task and wait for its result."""
        return self.client.submit(fn, *args, pure=False).result()

    def map(self, fn, iterable):
        """Client.map (one task per item, Dask's only granularity) and gather."""
        return self.client.gather(self.client.map(fn, list(iterable), pure=False))

    def close(self):
        """Close the client, then the scheduler and workers."""
        self.client.close()
        self.cluster.close()


def start(n):
    """Start a scheduler and n worker processes with one thread each."""
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    return _Handle(cluster, Client(cluster))

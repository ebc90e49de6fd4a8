"""Side-by-side benchmark harness: fiber_jupyter versus peer process pools.

The harness is a package so that task functions pickle under one stable name
(``bench.workloads.noop``) in every framework's workers.
"""

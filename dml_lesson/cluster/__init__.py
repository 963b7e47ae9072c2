"""The second layer: the Dask cluster, knowing nothing of models. The course's client, data placed on the
workers, faults, timelines and memory.

Modules: ``client`` (one shared client on 127.0.0.1, closing it, restart advice), ``startstop`` (starting and
closing so that a Stop never leaves half a cluster), ``shards`` (a layout's rows built on a worker and pinned
there, with lineage), ``faults`` (kill or slow a worker), ``timeline`` (who computed when), ``memory`` (each
worker's peak memory). Imports only from ``core``.
"""

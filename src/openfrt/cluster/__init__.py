"""openfrt on a Ray cluster: cameras as actors, the reference search split into shards.

Nothing here is imported unless cluster mode is asked for (``--ray-address`` or
``OPENFRT_RAY_ADDRESS``): without it openfrt runs on one machine and never imports Ray.

* ``settings.py``: :class:`ClusterSettings`, the shared-database check, connecting to Ray.
* ``sealing.py``: biometric data that crosses Ray travels encrypted with a key made per use.
* ``cameras.py``: one actor per camera running the whole per-camera pipeline, and the driver
  that stores what the actors send back exactly once.
* ``shards.py``: the encrypted reference index split over shard actors.
* ``local.py``: a throwaway multi-node cluster on one machine (tests, benchmarks, trials).
"""

"""Several processes serving as one server (DESIGN §2.9, docs/cluster.md).

Every process is a node (``redis_sm.py``): its sessions mirrored into Redis, a heartbeat for
membership, stanzas for another node's sessions sent there in one hop. ``suricate serve
--workers N`` (``supervisor.py``, ``worker.py``) forks N such nodes on one machine, sharing
the listening ports with SO_REUSEPORT; nodes on several machines are the same design.
"""

"""Several worker processes serving as one server (``suricate serve --workers N``).

The supervisor (``supervisor.py``) forks N workers; each runs its own ``Server`` with every
listener bound with SO_REUSEPORT, so the kernel spreads connections over them. The workers
talk over a local bus (``bus.py``, Unix sockets, framed messages, ``wire.py``): each announces
its sessions (bound, presence, gone) so every worker keeps a replica of where each full JID
lives (``node.py``), and a stanza for a session of another worker travels there as a frame
and is delivered through that session's own ``deliver``. To the router a remote session is a
proxy (``remote.py``) that implements the session protocol by forwarding (DESIGN §2.9).
"""

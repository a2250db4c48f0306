"""The one lock for changes of Python's warning filters made by code that may run on a thread.

``warnings.catch_warnings`` saves the process-wide list of filters when it is entered and puts it back
when it is left. Two threads inside such blocks at once can put each other's lists back out of order:
a filter set for one picture stays for good, or one is dropped while another picture still needs it
(so in Python 3.11; 3.14 can keep them per context). Pictures decode on threads (an ingest's rounds,
the server's uploads) while the model's int8 layers may be prepacked on another (the server's library
thread), so every such block in ibsearch runs under :data:`WARNING_FILTERS`.
"""

from __future__ import annotations

import threading

#: Held while a ``warnings.catch_warnings`` block of ibsearch runs (re-entrant: one may hold another).
WARNING_FILTERS = threading.RLock()

__all__ = ["WARNING_FILTERS"]

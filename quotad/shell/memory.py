"""The daemon's long-lived objects kept out of the cyclic garbage collector's way."""

from __future__ import annotations

import gc

__all__ = ["settle_memory"]


def settle_memory(*, full: bool = True) -> None:
    """Move what is alive now (the policy, the engine's state: millions of objects for 10,000 meters) out of the
    cyclic collector's way (`gc.freeze`). Otherwise every full collection walks them all, a pause of 50-400 ms on
    the loop at random moments (measured on the console's pages: p95 138 ms, 35 ms once frozen). What the daemon
    makes from now on is collected as usual, and settled in turn every 5 minutes (`full=False`: only what came
    since is collected first, a pause of tens of ms); `full` looks at everything again, so that garbage among the
    settled (an order replaced, a day's totals dropped) is collected too: at start, after a reload, hourly."""
    if full:
        gc.unfreeze()
    gc.collect()
    gc.freeze()

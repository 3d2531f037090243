"""One run of one instance (docs/design.md#error-policy,
docs/design.md#the-bookmark-and-the-window): the product's main job.

::

    lock ─► window = [bookmark − overlap, now − settle] ─► Mimecast pages ─► entries
         ─► dedupe against the category ─► staged in Redis ─► lifecycle: reconcile, expire,
            make room, ZIA adds (newest first) ─► tenant marked "to activate"
         ─► bookmark moved, state ok

The bookmark moves only when every source of the window was pulled and every entry pushed,
rejected or skipped; on any error it stays, so what Mimecast saw meanwhile is shared on
recovery.

====================  ===================================================================
``window``            the span of record times a run pulls
``pipeline``          :class:`~threatshare.sync.pipeline.Run`: pull, update the category,
                      withdraw
``change``            the one path of every add to and removal from a category, and its trail
``lifecycle``         reconcile, expire, make room and push (docs/design.md#reconciliation)
``lifecycle_alerts``  the quota warning and the "at capacity" e-mail, once per incident
``transitions``       :func:`sync_instance`: the state machine and its alerts
``activation``        activating a tenant's staged changes once, fleet-wide
``unblock``           the unblock operation: listed, removed, activated
====================  ===================================================================
"""

from threatshare.sync.transitions import (
    RunResult,
    halt_refused_tenant,
    halt_refused_tenants,
    sync_all,
    sync_instance,
)

__all__ = [
    "RunResult",
    "halt_refused_tenant",
    "halt_refused_tenants",
    "sync_all",
    "sync_instance",
]

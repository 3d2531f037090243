"""Redis state (docs/design.md#state-in-redis, docs/design.md#expiry): the instance store, the
ledger of entries, the run lock, activation marks, the lifecycle record, the tenant's quota, the
runtime allow list.

=====================  ===========================================================
``store``              :class:`~threatshare.state.store.Store`: state, bookmark, counters
``ledger``             :class:`~threatshare.state.ledger.Ledger`: entries by last sighting,
                       staged entries, tombstones of hand removals
``lifecycle``          :class:`~threatshare.state.lifecycle.LifecycleRecord`: totals, marks
``quota``              :class:`~threatshare.state.quota.QuotaRecord`: readings, warning state
``unblocked``          :class:`~threatshare.state.unblocked.UnblockList`: the runtime allow list
``lock``               :class:`~threatshare.state.lock.RunLock`: one run per instance
``activation_marks``   :class:`~threatshare.state.activation_marks.ActivationMarks`
=====================  ===========================================================
"""

"""Redis state (S5): the instance store, the ledger of entries, the run lock, activation marks.

=====================  ===========================================================
``store``              :class:`~threatshare.state.store.Store`: state, bookmark, counters, quota
``ledger``             :class:`~threatshare.state.ledger.Ledger`: entries held and staged
``lock``               :class:`~threatshare.state.lock.RunLock`: one run per instance
``activation_marks``   :class:`~threatshare.state.activation_marks.ActivationMarks`
=====================  ===========================================================
"""

"""Alert e-mail (docs/design.md#alerts): composing a message from a state transition, and delivering
it.

=============  ===============================================================
``message``    :class:`~threatshare.alerts.message.Alert`, the halt and recovery texts
``warnings``   the texts of the quota warning and of "at capacity" (docs/design.md#alerts)
``compose``    the e-mail of an alert: headers checked, the body its kind asks for
``outbox``     :class:`~threatshare.alerts.outbox.Outbox`: queued in Redis, sent over SMTP
``smtp``       one SMTP session: TLS as configured, failures described without secrets
=============  ===============================================================
"""

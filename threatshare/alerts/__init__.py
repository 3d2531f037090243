"""Alert e-mail (S6): composing a message from a state transition, and delivering it.

=============  ===============================================================
``message``    :class:`~threatshare.alerts.message.Alert` and its e-mail text
``outbox``     :class:`~threatshare.alerts.outbox.Outbox`: queued in Redis, sent over SMTP
``smtp``       one SMTP session: TLS as configured, failures described without secrets
=============  ===============================================================
"""

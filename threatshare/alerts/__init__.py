"""Alerts (docs/design.md#alerts): composing a message from a state transition, and delivering
it by e-mail or webhook.

=============  ===============================================================
``message``    :class:`~threatshare.alerts.message.Alert`, the halt and recovery texts
``warnings``   the texts of the quota warning and of "at capacity"
``channels``   recipients: e-mail addresses, and webhooks known by a reference
``compose``    the e-mail of an alert: headers checked, the body its kind asks for
``webhook``    the JSON of an alert for Slack, Teams or a generic receiver, and its POST
``entries``    what the outbox keeps in Redis, and its Lua scripts
``outbox``     :class:`~threatshare.alerts.outbox.Outbox`: queued in Redis, sent per channel
``smtp``       one SMTP session: TLS as configured, failures described without secrets
=============  ===============================================================
"""

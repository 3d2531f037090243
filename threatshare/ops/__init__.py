"""What operators run and read: ``status``, the ``run --once`` summary, ``check --live``.

=============  ===============================================================
``status``     the S7 record of each instance, as JSON or a table
``run_once``   ``threatshare run --once`` and its summary table
``live_check`` a token and one read call against each account and tenant
``table``      the one plain-text table renderer both tables use
=============  ===============================================================
"""

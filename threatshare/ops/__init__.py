"""What operators run and read: ``status``, the ``run --once`` summary and its progress,
``check --live``, ``explain``, and the operations endpoint (docs/design.md#operations-endpoint).

=====================  ==========================================================================
``status``             the ``status`` records, as JSON or a table (docs/design.md#command-line)
``run_once``           ``run --once``: every instance once, one activation per changed tenant
``terminal_progress``  ``run --once`` progress: bars on a terminal, plain lines otherwise
``live_check``         ``check --live``: a token and one read call per account and tenant
``unblock``            the false-positive button (docs/design.md#unblocking)
``table``              the plain-text tables operators read
``serve``, ``server``  the read-only operations endpoint, its WSGI application
``snapshot``           one reading of the fleet's state for ``/metrics`` and the page
``metrics``, ``page``  ``/metrics`` and the status page, rendered from a snapshot
``stats``              the totals the endpoint exports
=====================  =========================================================================="""

"""What operators run and read: ``status``, the ``run --once`` summary and its progress,
``check --live``, and the operations endpoint (S14).

=====================  ==========================================================
``status``             the S7 record of each instance, as JSON or a table
``run_once``           ``threatshare run --once`` and its summary table
``terminal_progress``  ``run --once`` progress: bars on a terminal, plain lines otherwise
``live_check``         a token and one read call against each account and tenant
``table``              the one plain-text table renderer both tables use
``stats``              the totals the endpoint exports beside the state of S5
``snapshot``           one reading of the fleet, which the metrics and the page render
``metrics``            ``/metrics``: a Prometheus collector computed at scrape time
``page``               ``/``: the status page (its template in ``templates/``)
``server``             the read-only WSGI application and its waitress server
``serve``              ``threatshare serve``, and the endpoint inside ``threatshare run``
``listen``             the ``HOST:PORT`` the endpoint binds
=====================  ==========================================================
"""

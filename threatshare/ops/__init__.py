"""What operators run and read: ``status``, the ``run --once`` summary and its progress,
``check --live``, and the operations endpoint (S14).

=====================  ==================================================="""

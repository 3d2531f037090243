"""From Mimecast records to ZIA entries (docs/design.md#entries).

=============  ===============================================================
``normalise``  one URL or host made into a valid ZIA entry, or the reason it cannot be
``extract``    :class:`~threatshare.indicators.extract.Extractor`: records to entries, per an
               instance's sources, allow list and protected hosts, counted in a ``Tally``
``entry``      what an operator types (a URL, a host, a ZIA entry) read as an entry
``data/``      ``protected_hosts.txt``: shared platforms never blocked at host level
=============  ===============================================================
"""

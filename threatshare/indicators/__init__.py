"""From Mimecast records to ZIA entries, and what is never blocked (docs/design.md#entries,
docs/design.md#what-is-never-blocked).

=============  ===============================================================
``normalise``  one URL or host made into a valid ZIA entry, or the reason it cannot be
``grammar``    ZIA's format rules for an entry, written apart from the shaping (the last guard)
``extract``    :class:`~threatshare.indicators.extract.Extractor`: records to entries, per an
               instance's sources and allow list and the rules, counted in a ``Tally``
``entry``      what an operator types (a URL, a host, a ZIA entry) read as an entry
``matching``   which entries block a request, as ZIA matches them (explain, unblock)
``evidence``   what a record says of its threat: the verdict and the message
``rules``      the rule sets of docs/design.md#what-is-never-blocked: shipped data plus
               settings, their summary for ``check``, their digest
``suffixes``   the Public Suffix List (from the ``publicsuffixlist`` package)
``wrappers``   how the target of a link wrapper or redirector is recovered
``judge``      the rules of what is never blocked applied to one entry, from its host's flags
``zones``      which lists a host is on or under, as bit flags
``cache``      decisions cached within a budget of bytes
``data/``      protected hosts, shared endpoints, wrappers, policy verdicts (versioned text)
=============  ===============================================================
"""

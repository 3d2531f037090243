"""Emulators of Mimecast, an OAuth2 IdP and ZIA, and an SMTP sink, on loopback.

Real HTTP and SMTP with the upstreams' failure modes (429s, 5xx, edit locks, quota, expired
tokens, ``fail[]`` on HTTP 200); used by the tests, the benchmarks and ``threatshare demo``.
"""

"""threatshare: Mimecast threats shared with a Zscaler ZIA custom URL category, per instance.

The library: everything that does not depend on RQ. The layout is in README's design notes;
:mod:`threatshare.cli` is the top of the import graph and imported by nothing.
"""

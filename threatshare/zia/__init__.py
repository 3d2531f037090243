"""Zscaler ZIA: everything threatshare says to a tenant.

=================  ================================================================
``client``         :class:`~threatshare.zia.client.ZiaClient`: quota, ADD/REMOVE, activate
``categories``     find, create (with the first batch), read one, sizes of all
``credentials``    the credential of a tenant (OneAPI token, or a legacy session)
``errors``         ZIA answers mapped onto the error tree (S4)
``bisect``         isolating the entries ZIA refuses in a batch
``ratelimit``      the tenant's fleet-wide call budget, kept in Redis
=================  ================================================================
"""

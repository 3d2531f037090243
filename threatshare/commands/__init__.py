"""The commands of ``threatshare``, one small module each (its help, arguments and handler as a
:class:`~threatshare.commands.base.Command`), listed and wired by :mod:`threatshare.cli`.

Adding a command: a module here with its ``COMMAND``, and one line in ``cli.COMMANDS``.
"""

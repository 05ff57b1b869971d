"""Vending Hub: the real-time backend between a vending machine and a shopper's phone.

See ``README.md`` for how to run it and ``docs/`` for the design; the wire contract is
``CONTRACT.md`` (v1), kept beside the project in ``shared/``.
"""

__version__ = "0.1.0"

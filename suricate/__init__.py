"""Suricate: an XMPP server configured like MongooseIM 6.4."""

__version__ = "0.1.0"

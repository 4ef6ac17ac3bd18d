"""The GraphQL administration API (MongooseIM 6.4's admin, domain_admin and user endpoints).

Schema first: the ``.graphql`` files under ``schema/`` are the API; ``resolvers/`` gives each
field its code (one file per category) and ``schema.py`` refuses to build a schema with a field
left without one. The command line is generated from the same admin schema (``suricate.cli``).
"""

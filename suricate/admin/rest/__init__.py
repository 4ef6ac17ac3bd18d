"""MongooseIM 6.4's REST APIs, ``mongoose_admin_api`` and ``mongoose_client_api``, as a thin
layer over the GraphQL resolvers (see ``common``). Imported only when one is configured."""

"""The GraphiQL page served to browsers on each GraphQL endpoint (6.4 serves one too)."""

from __future__ import annotations

import html

# The page loads GraphiQL from a public CDN in the operator's browser; the server itself
# serves only this page and the API.
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Suricate GraphQL: {endpoint}</title>
<link rel="stylesheet" href="https://unpkg.com/graphiql@3/graphiql.min.css">
<style>body {{ margin: 0; height: 100vh; }} #graphiql {{ height: 100vh; }}</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL for the {endpoint} API at {path} ...</div>
<script src="https://unpkg.com/react@18/umd/react.production.min.js"></script>
<script src="https://unpkg.com/react-dom@18/umd/react-dom.production.min.js"></script>
<script src="https://unpkg.com/graphiql@3/graphiql.min.js"></script>
<script>
  const fetcher = GraphiQL.createFetcher({{ url: {url} }});
  ReactDOM.createRoot(document.getElementById("graphiql"))
    .render(React.createElement(GraphiQL, {{ fetcher: fetcher }}));
</script>
</body>
</html>
"""


def graphiql_page(path: str, endpoint: str) -> str:
    return _PAGE.format(endpoint=html.escape(endpoint), path=html.escape(path),
                        url=html.escape(repr(path)))

"""The HTTP API: routes, dependencies, middleware and the SSE relay."""

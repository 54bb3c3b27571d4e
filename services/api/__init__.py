"""The HTTP API: the only package of the service that knows FastAPI and Starlette.

``app`` (``create_app`` and the lifespan), ``deps`` (dependencies as ``Annotated`` aliases),
``routes/`` (thin: parse, call the core, shape the answer), ``auth``, ``errors`` (domain
errors mapped to HTTP once), ``schemas``, ``state``, ``metrics`` and ``request_guard``."""

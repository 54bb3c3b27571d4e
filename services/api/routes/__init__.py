"""HTTP routes, one module per area; each is thin and leaves the work to the core."""

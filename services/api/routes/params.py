"""The routes' shared numeric parameters, each with both bounds, so no out-of-range value
reaches the store (SQLite, FAISS): a value outside them is a 422 that names the parameter.

Limits (also in the OpenAPI schema): ``offset`` 0..2**63-1 (SQLite's largest integer; past the
end is an empty page), ``limit`` 1..1000 items a page, ``k`` 1..1000 results, ``at`` a finite
time >= 0 seconds.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Query

MAX_OFFSET = 2**63 - 1
MAX_PAGE = 1000
MAX_K = 1000

_K_TEXT = f"how many items to return (1-{MAX_K})"
_AT_TEXT = "query with the window at this time (s) only"

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip (oldest first)")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"items a page (1-{MAX_PAGE})")]
K = Annotated[int, Query(ge=1, le=MAX_K, description=_K_TEXT)]
At = Annotated[float | None, Query(ge=0, allow_inf_nan=False, description=_AT_TEXT)]
KForm = Annotated[int, Form(ge=1, le=MAX_K, description=_K_TEXT)]
AtForm = Annotated[float | None, Form(ge=0, allow_inf_nan=False, description=_AT_TEXT)]

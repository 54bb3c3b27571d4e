"""The distributed mode's Celery side: ``celery_app`` (built from ``Settings``), ``tasks``
(thin), ``messages`` (what travels through Redis: paths and vectors, never media), ``backend``
(the API's ``CeleryEmbeddingBackend``), ``model`` (a worker's lazily loaded model) and
``process`` (``avid worker``'s Celery worker)."""

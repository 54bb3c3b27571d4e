"""PostgreSQL for items and jobs (``AVID_DATABASE_URL``), beside the SQLite default.

``url`` checks and normalises the URL (no connection); ``engine`` opens an SQLAlchemy engine
on psycopg 3 and brings the schema to Alembic's head (``migrations``); ``tables`` describes
the tables for SQLAlchemy Core queries. The PostgreSQL implementations of the item database
and the job records (``services.index.postgres_metadata``, ``services.postgres_job_records``)
keep the contracts of their SQLite counterparts.
"""

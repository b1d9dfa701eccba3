"""Example FastAPI application whose schema is owned by Alembic (via ``alembic-repair``)."""

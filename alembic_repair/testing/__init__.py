"""Test support: scenario builders that create broken Alembic projects from scratch."""

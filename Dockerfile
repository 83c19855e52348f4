FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY broker broker
COPY organizations organizations
COPY decisions decisions
COPY notifications notifications
COPY channels channels
COPY audit audit
COPY portal portal
COPY templates templates
COPY manage.py .
# Editable, so the code runs from /app (settings find templates/ and var/ beside it).
RUN pip install -e . && SECRET_KEY=build python manage.py collectstatic --noinput -v 0
EXPOSE 8000
# One server for everything (broker/asgi.py): the long-poll (GET /decisions/{id}?wait=N) on the
# event loop, holding no thread while it waits; the API and pages through Django's WSGI handler
# in a thread pool; static files. uvicorn takes its worker count from WEB_CONCURRENCY.
ENV WEB_CONCURRENCY=2
CMD ["uvicorn", "broker.asgi:application", "--host", "0.0.0.0", "--port", "8000"]

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY broker broker
COPY organizations organizations
COPY decisions decisions
COPY notifications notifications
COPY audit audit
COPY templates templates
COPY manage.py .
# Editable, so the code runs from /app (settings find templates/ and var/ beside it).
RUN pip install -e '.[server]' && SECRET_KEY=build python manage.py collectstatic --noinput -v 0
EXPOSE 8000
CMD ["gunicorn", "broker.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4"]

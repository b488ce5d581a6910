# stockade serve on SQLite, as a non-root user, with the database on a volume.
#   docker build -t stockade . && docker run -p 8000:8000 -v stockade-data:/data stockade
FROM python:3.11-slim

RUN groupadd --gid 10001 stockade \
 && useradd --create-home --uid 10001 --gid 10001 stockade \
 && mkdir /data && chown 10001:10001 /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY stockade ./stockade
# The same install as ./dev, without the dev extra.
RUN pip install --no-cache-dir . && rm -rf /root/.cache

# Numeric, so that a runtime can check it is not root (Kubernetes runAsNonRoot).
USER 10001:10001
WORKDIR /data
VOLUME /data
ENV STOCKADE_DATABASE=sqlite:////data/stockade.db \
    STOCKADE_PORT=8000
EXPOSE 8000

# Follows STOCKADE_PORT if it is changed at run time.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('STOCKADE_PORT', '8000'), timeout=2)"]

# Set STOCKADE_ADMIN_TOKEN; without it a token is generated and printed once at start.
CMD ["stockade", "serve", "--host", "0.0.0.0"]

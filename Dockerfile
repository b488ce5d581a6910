# stockade serve on SQLite, as a non-root user, with the database on a volume.
#   docker build -t stockade . && docker run -p 8000:8000 -v stockade-data:/data stockade
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 stockade \
 && mkdir /data && chown stockade /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY stockade ./stockade
# The same install as ./dev, without the dev extra.
RUN pip install --no-cache-dir . && rm -rf /root/.cache

USER stockade
WORKDIR /data
VOLUME /data
ENV STOCKADE_DATABASE=sqlite:////data/stockade.db \
    STOCKADE_PORT=8000
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"

# Set STOCKADE_ADMIN_TOKEN; without it a token is generated and printed once at start.
CMD ["stockade", "serve", "--host", "0.0.0.0"]

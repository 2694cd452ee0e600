# credit-ledger API image: slim, non-root, with a health check.
#   docker build -t credit-ledger .
#   docker run -p 8000:8000 -v ledger-data:/var/lib/credit-ledger credit-ledger
# The same image runs the standalone projector: `credit-ledger project` (see compose.yaml).
# The health check asks the port of LEDGER_BIND, so `-e LEDGER_BIND=0.0.0.0:9000` works.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api api
COPY ledger ledger
COPY projections projections
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --create-home \
        --home-dir /var/lib/credit-ledger credit-ledger
COPY --from=build /install /usr/local
ENV LEDGER_BIND=0.0.0.0:8000 \
    LEDGER_WORKERS=2 \
    LEDGER_DATABASE_URL=sqlite:////var/lib/credit-ledger/credit-ledger.db \
    LEDGER_LOG_FORMAT=json \
    PROMETHEUS_MULTIPROC_DIR=/tmp/credit-ledger-metrics \
    PYTHONUNBUFFERED=1
USER credit-ledger
WORKDIR /var/lib/credit-ledger
VOLUME ["/var/lib/credit-ledger"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('LEDGER_BIND', '0.0.0.0:8000').rpartition(':')[2]; sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=4).status != 200)"]
CMD ["credit-ledger", "serve"]

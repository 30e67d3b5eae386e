# syntax=docker/dockerfile:1
# Build: docker build -t amishare .   Run: docker run -p 8080:8080 -e AMISHARE_API_TOKENS=... amishare

FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/amishare
COPY pyproject.toml constraints.txt README.md ./
COPY app ./app
COPY migrations ./migrations
RUN /opt/amishare/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/amishare/bin/pip install --no-cache-dir -c constraints.txt .

FROM python:3.11-slim AS runtime
RUN useradd --system --uid 10001 --home-dir /srv/amishare --create-home amishare
COPY --from=build /opt/amishare /opt/amishare
ENV PATH=/opt/amishare/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AMISHARE_DATABASE_URL=sqlite+aiosqlite:////srv/amishare/data/amishare.db \
    AMISHARE_LOG_FORMAT=json
WORKDIR /srv/amishare
RUN mkdir -p /srv/amishare/data && chown amishare /srv/amishare/data
USER amishare
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"
CMD ["amishare", "serve", "--host", "0.0.0.0", "--port", "8080"]

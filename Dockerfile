# lb in a container: a Rust build stage (with cmake for Pingora's zlib-ng and protoc for the etcd
# client), then a slim runtime.
#   docker build -t lb .
#   docker run -v "$PWD/conf:/etc/lb:ro" -p 8080:8080 lb
# lb runs as PID 1 and then supervises the serving process: `docker kill -s HUP <container>`
# re-reads /etc/lb/lb.yaml and applies pools and routes in place; `docker kill -s USR2
# <container>` upgrades gracefully to a new process (listener changes); `docker stop` drains
# within the grace period. The admin listener (API, dashboard, /metrics) must listen on 0.0.0.0
# to be published, which lb allows only with a token (admin.token_env: LB_ADMIN_TOKEN).

FROM rust:1-bookworm AS build
# Build-stage packages follow the base image's Debian release; pinning versions here would
# break the build at every Debian point release (hadolint DL3008).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The admin API's OpenAPI document is embedded in the binary.
COPY docs ./docs
RUN cargo build --release --locked --bin lb \
 && install -m 0755 target/release/lb /usr/local/bin/lb

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin lb
COPY --from=build /usr/local/bin/lb /usr/local/bin/lb
# A default configuration; mount your own directory over it.
COPY conf/ /etc/lb/
USER 10001:10001
EXPOSE 8080 9900
# SIGTERM is lb's graceful stop: in-flight requests finish within server.grace_period_seconds
# (5 s + 3 s shutdown timeout in the shipped config: inside Docker's default 10 s stop timeout).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
  CMD ["lb", "probe", "-c", "/etc/lb/lb.yaml"]
ENTRYPOINT ["lb"]
CMD ["-c", "/etc/lb/lb.yaml"]

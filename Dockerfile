# lb in a container: a Rust build stage (the packages scripts/setup --build names), then a slim
# runtime. `.ci/run` builds this file unchanged and checks each promise below (.ci/image).
#   docker build -t lb .
#   docker run -v "$PWD/conf:/etc/lb:ro" -p 8080:8080 lb
# lb runs as PID 1 and then supervises the serving process: `docker kill -s HUP <container>`
# re-reads /etc/lb/lb.yaml and applies pools and routes in place; `docker kill -s USR2
# <container>` upgrades gracefully to a new process (listener changes); `docker stop` drains
# within the grace period. The admin listener (API, dashboard, /metrics) must listen on 0.0.0.0
# to be published, which lb allows only with a token (admin.token_env: LB_ADMIN_TOKEN).

FROM rust:1-bookworm AS build
WORKDIR /src
# The build's packages, from the same list scripts/setup installs for a build on a machine
# (`--build`: a C toolchain, pkg-config, cmake for Pingora's zlib-ng, protoc and libprotobuf-dev
# for the etcd client), each named and installed without Recommends. They follow the base
# image's Debian release; pinning versions would break the build at every point release.
COPY scripts/setup ./scripts/setup
RUN scripts/setup --build && rm -rf /var/lib/apt/lists/*
# Everything Cargo.toml names: the sources, the OpenAPI document embedded in the binary, and the
# declared benchmark (cargo reads every target of the manifest, even for --bin lb).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY docs ./docs
COPY benches ./benches
# The release profile keeps line tables (readable backtraces and profiles): they are most of
# the binary, so they go to lb.debug in the build stage (`objcopy --add-gnu-debuglink` names it,
# for gdb and perf given that file), and the image gets the binary without them.
RUN cargo build --release --locked --bin lb \
 && objcopy --only-keep-debug target/release/lb /usr/local/lib/lb.debug \
 && objcopy --strip-debug --add-gnu-debuglink=/usr/local/lib/lb.debug target/release/lb /usr/local/bin/lb

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

# syntax=docker/dockerfile:1
# Meridian's container image: a release build on Debian, then only the binary
# on a distroless runtime (glibc, CA certificates, no shell), as a non-root user.
#
#   docker build -t meridian .
#   docker run --rm -p 8080:8080 meridian
#
# Without Docker or a registry, scripts/image builds the same image with buildah.

FROM docker.io/library/rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p meridian --bin meridian \
 && install -d /out/data \
 && strip -o /out/meridian target/release/meridian

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="meridian" \
      org.opencontainers.image.description="Region-aware inference gateway for Amazon Bedrock" \
      org.opencontainers.image.source="https://github.com/meridian-gateway/meridian"
COPY --from=build /out/meridian /usr/local/bin/meridian
COPY --from=build --chown=65532:65532 /out/data /var/lib/meridian
# Config: mount a file at /etc/meridian/meridian.toml (or set MERIDIAN_CONFIG);
# without one, built-in defaults apply. The working directory holds the S3
# spool; mount a volume there to keep records across restarts.
ENV MERIDIAN_LISTEN=0.0.0.0:8080 \
    MERIDIAN_LOG=info
WORKDIR /var/lib/meridian
USER 65532:65532
EXPOSE 8080
# SIGTERM: stop accepting, finish what is under way, flush logs, exit.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/meridian", "probe", "--path", "/ready"]
ENTRYPOINT ["/usr/local/bin/meridian"]
CMD ["serve"]

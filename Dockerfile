# online-record: the service on Node 24 with Debian's ffmpeg, as a non-root user.
# Build: docker build -t online-record .   Run: see docs/operations.md ("Containers").

# Production dependencies only; the workspace packages run from their
# TypeScript sources (Node 24 strips the types), so there is nothing to compile.
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/protocol/package.json packages/protocol/
COPY packages/receiver/package.json packages/receiver/
COPY packages/server/package.json packages/server/
# The CLI's launcher, so that npm links node_modules/.bin/online-record.
COPY packages/server/bin packages/server/bin
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=deps /app/node_modules node_modules
COPY package.json ./
COPY packages packages
RUN mkdir /data && chown node:node /data
ENV NODE_ENV=production \
    PATH=/app/node_modules/.bin:$PATH \
    ONLINE_RECORD_HOST=0.0.0.0 \
    ONLINE_RECORD_DATA_DIR=/data \
    FFMPEG_PATH=/usr/bin/ffmpeg \
    FFPROBE_PATH=/usr/bin/ffprobe
USER node
VOLUME /data
EXPOSE 8080 1935
# Liveness only; a load balancer should route by /readyz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.ONLINE_RECORD_HTTP_PORT ?? 8080}/healthz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM drains (ONLINE_RECORD_DRAIN_S, default 30 s) and gives up 15 s
# after it: give the container longer to stop (docker stop -t 50, compose
# stop_grace_period: 50s).
STOPSIGNAL SIGTERM
# tini reaps the ffmpeg processes the service starts and passes signals on.
ENTRYPOINT ["tini", "--"]
CMD ["node", "--conditions=@online-record/source", "packages/server/src/main.ts"]

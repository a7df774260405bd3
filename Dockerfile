# pg-ingress container image: the compiled proxy on Node.js 24, production
# dependencies only, running as the unprivileged user node.
#   docker build -t pg-ingress .
#   docker run -p 6432:6432 -p 9127:9127 -v ./my.yaml:/etc/pg-ingress/pg-ingress.yaml:ro pg-ingress

# Compiles src/ to dist/. --ignore-scripts: `prepare` (the build) would run
# before the sources are copied; the build runs once, explicitly, below.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# The runtime dependencies alone, in their own stage so npm's cache stays out
# of the final image. No dependency needs an install script.
FROM node:24-bookworm-slim AS production-dependencies
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json ./
COPY --from=production-dependencies /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
# The documented place for the configuration: mount a file (a ConfigMap) over it.
COPY config/docker/pg-ingress.yaml /etc/pg-ingress/pg-ingress.yaml
USER node
# 6432: PostgreSQL clients (TLS). 9127: /metrics, /healthz, /readyz.
EXPOSE 6432 9127
# The slim image has no curl: Node asks /healthz itself.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "require('http').get('http://127.0.0.1:9127/healthz', (r) => process.exit(r.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1))"]
# node is PID 1 and pg-ingress handles the signals itself: SIGTERM drains
# (waits for clients up to shutdown_timeout), SIGINT waits for servers, SIGQUIT
# stops at once, SIGHUP reloads the configuration.
STOPSIGNAL SIGTERM
# A 4 MB young generation keeps idle clients cheap (see src/workers/node-flags.ts).
ENTRYPOINT ["node", "--max-semi-space-size=4", "bin/pg-ingress.js"]
CMD ["--config", "/etc/pg-ingress/pg-ingress.yaml"]

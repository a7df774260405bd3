# pg-ingress container image: the compiled proxy on the current Node.js LTS.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bin ./bin
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY config ./config
COPY package.json ./
USER node
EXPOSE 6432 9127
# A 4 MB young generation keeps idle clients cheap (see src/workers/node-flags.ts).
ENTRYPOINT ["node", "--max-semi-space-size=4", "bin/pg-ingress.js"]
CMD ["--config", "config/pg-ingress.yaml"]

# Multi-stage build of the Meterline gateway. The image runs the built gateway in production mode (NODE_ENV=production:
# no demo keys, no simulated fleet, an external broker; config/production-defaults.json) with the configuration in
# config/ plus environment overrides (METERLINE__SECTION__KEY=value) or a file named by METERLINE_CONFIG.
# METERLINE_DEMO=1 runs the demo instead (in-process broker and fleet, demo keys printed and kept in /app/data).
FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 builds from source where no prebuilt binary fits.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
# Only the program: tsconfig.build.json compiles src/, drivers/ and simulators/, never tests/.
COPY tsconfig.json tsconfig.build.json ./
COPY src src
COPY drivers drivers
COPY simulators simulators
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production \
    METERLINE__API__HOST=0.0.0.0
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY package.json ./
COPY config config
COPY firmware-profiles firmware-profiles
COPY src/console src/console
# Serial links (Modbus RTU, DLMS/HDLC on /dev/ttyUSB*) belong to group dialout (GID 20 on Debian, here too): the user is
# in it, so `--device /dev/ttyUSB0` is enough; a host whose dialout has another GID needs `--group-add <that GID>`.
RUN usermod -a -G dialout node && mkdir -p /app/data && chown node:node /app/data
USER node
EXPOSE 8080
VOLUME ["/app/data"]
# Reads api.port from the same configuration as the gateway (METERLINE__API__PORT, METERLINE_CONFIG), not a fixed 8080.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s CMD ["node", "dist/src/healthcheck.js"]
CMD ["node", "dist/src/main.js"]

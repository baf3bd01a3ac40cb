import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

/**
 * compose.yaml and the Dockerfile, checked as far as this machine allows (no image can be built or pulled here): the
 * compose file parses, and describes two gateway instances on one PostgreSQL and one mosquitto.
 */
interface Service {
  build?: string;
  image?: string;
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
}
const repo = process.cwd();
const compose = parse(readFileSync(join(repo, 'compose.yaml'), 'utf8'), { merge: true }) as { services: Record<string, Service> };

describe('compose.yaml', () => {
  it('names PostgreSQL, mosquitto and two gateway instances', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['gateway1', 'gateway2', 'mosquitto', 'postgres']);
    expect(compose.services.postgres!.image).toMatch(/^postgres:/);
    expect(compose.services.mosquitto!.image).toMatch(/^eclipse-mosquitto:/);
  });

  it('runs both instances from this Dockerfile on the same database and broker, with their own ids and ports', () => {
    const gws = [compose.services.gateway1!, compose.services.gateway2!];
    for (const gw of gws) {
      expect(gw.build).toBe('.');
      expect(gw.environment!.DATABASE_URL).toMatch(/^postgres:\/\/[^@]+@postgres:5432\//);
      expect(gw.environment!.METERLINE__MQTT__MODE).toBe('external');
      expect(gw.environment!.METERLINE__MQTT__URL).toBe('mqtt://mosquitto:1883');
      expect(gw.environment!.METERLINE_AUDIT_KEY).toContain('METERLINE_AUDIT_KEY');
      expect(gw.depends_on!.postgres!.condition).toBe('service_healthy');
    }
    expect(new Set(gws.map((g) => g.environment!.METERLINE__INSTANCEID)).size).toBe(2);
    expect(new Set(gws.flatMap((g) => g.ports!.map((p) => p.split(':')[0]))).size).toBe(2);
  });

  it("mounts a mosquitto configuration that exists and listens beyond loopback", () => {
    const mount = compose.services.mosquitto!.volumes!.find((v) => v.endsWith('/mosquitto/config/mosquitto.conf:ro'))!;
    const file = join(repo, mount.split(':')[0]!);
    expect(existsSync(file)).toBe(true);
    expect(readFileSync(file, 'utf8')).toMatch(/^listener 1883$/m);
  });
});

describe('Dockerfile', () => {
  const dockerfile = readFileSync(join(repo, 'Dockerfile'), 'utf8');
  it('compiles the program without the tests, checks health on the configured port, and puts the user in dialout', () => {
    expect(dockerfile).not.toMatch(/^COPY tests/m);
    expect(dockerfile).toContain('tsc -p tsconfig.build.json');
    expect(dockerfile).toMatch(/^HEALTHCHECK .*dist\/src\/healthcheck\.js/m);
    expect(dockerfile).not.toMatch(/^HEALTHCHECK .*8080/m);
    expect(dockerfile).toMatch(/usermod -a -G dialout node/);
    expect(dockerfile).toMatch(/ENV NODE_ENV=production/);
  });
});

/**
 * One suite, three levels told apart by suffix:
 *   *.spec.ts      pure and fast (unit)
 *   *.int-spec.ts  one adapter against a real server (NATS, SQLite, sshd, cgroups); deploy/ files against their tools
 *   test/e2e/*.e2e-spec.ts  whole journeys through the running system
 * TypeScript is compiled by SWC (type-checking is `npm run typecheck`).
 */
const transform = { '^.+\\.ts$': ['@swc/jest'] };
const common = { transform, testEnvironment: 'node', moduleFileExtensions: ['ts', 'js', 'json'] };

module.exports = {
  testTimeout: 60_000,
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/{apps,libs}/**/*.spec.ts'] },
    { ...common, displayName: 'int', testMatch: ['<rootDir>/{apps,libs,deploy}/**/*.int-spec.ts'] },
    { ...common, displayName: 'e2e', testMatch: ['<rootDir>/test/e2e/**/*.e2e-spec.ts'] },
  ],
};

/**
 * Test tiers as jest projects, so a tier runs alone: `npm test -- --selectProjects unit service`
 * takes seconds and starts nothing (no database, no S3, no Ceph). The other tiers share one global
 * setup and teardown (the same module for each, which jest runs once per run): PostgreSQL when
 * TEST_DATABASE_URL is not set, and Ceph when a selected file uses it.
 */
const shared = {
  testEnvironment: 'node',
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022' } }] },
};
const withInfrastructure = {
  globalSetup: '<rootDir>/tests/support/global-setup.ts',
  globalTeardown: '<rootDir>/tests/support/global-teardown.ts',
};
const tier = (name, infrastructure) => ({
  ...shared,
  ...(infrastructure ? withInfrastructure : {}),
  displayName: name,
  roots: [`<rootDir>/tests/${name}`],
});

/** @type {import('jest').Config} */
module.exports = {
  projects: [
    // Pure functions and single modules, no infrastructure.
    tier('unit', false),
    // Business rules of the services, with in-memory repositories derived from the real ones.
    tier('service', false),
    // The blob stores against a real S3-protocol server (s3rver) and Ceph.
    tier('storage', true),
    // The HTTP API end to end over real PostgreSQL and S3.
    tier('api', true),
    // Browsers and other clients against a running service.
    tier('e2e', true),
  ],
  testTimeout: 60_000,
  // Two cores: suites each start their own database and S3 server.
  maxWorkers: 2,
};

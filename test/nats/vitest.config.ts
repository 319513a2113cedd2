import { defineConfig } from "vitest/config";

/** Integration suite against real nats-server processes (one set per test, on its own loopback ports). */
export default defineConfig({
  test: {
    name: "nats",
    root: new URL("../..", import.meta.url).pathname,
    include: ["test/nats/**/*.test.ts"],
    testTimeout: 90_000,
    hookTimeout: 30_000,
  },
});

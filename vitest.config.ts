import { defineConfig } from "vitest/config";

/**
 * unit: pure code and fixtures, in parallel.
 * lab, nats, kernel: real namespaces, OVS, dnsmasq, nftables, nats-server
 * and a qemu guest; each file builds and tears down its own, one file at a
 * time so two-core machines are not oversubscribed.
 */
export default defineConfig({
  test: {
    // Each run's temporary files in a directory of its own, checked empty at the end (test/tmp-guard.ts).
    globalSetup: ["test/tmp-guard.ts"],
    projects: [
      { test: { name: "unit", include: ["packages/*/src/**/*.test.ts", "packaging/**/*.test.ts", "test/unit/**/*.test.ts"] } },
      { test: { name: "nats", include: ["test/nats/**/*.test.ts"], fileParallelism: false, testTimeout: 60_000, hookTimeout: 60_000 } },
      { test: { name: "lab", include: ["test/lab/**/*.test.ts"], fileParallelism: false, testTimeout: 120_000, hookTimeout: 180_000 } },
      { test: { name: "bootstrap", include: ["test/bootstrap/**/*.test.ts"], fileParallelism: false, testTimeout: 120_000, hookTimeout: 180_000 } },
      { test: { name: "systemd", include: ["test/systemd/**/*.test.ts"], fileParallelism: false, testTimeout: 180_000, hookTimeout: 180_000 } },
      { test: { name: "kernel", include: ["test/kernel/**/*.test.ts"], fileParallelism: false, testTimeout: 300_000, hookTimeout: 400_000 } },
    ],
  },
});

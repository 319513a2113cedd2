/**
 * Vitest global set-up of every project: the run's temporary files live in
 * a directory of its own, and a test that leaves anything there fails the
 * run. Set-up makes `<tmpdir>/nf-test-XXXXXX` (mode 0700) and points TMPDIR
 * at it, so os.tmpdir() in every test worker, and in every process a test
 * spawns (nats-server, agents, the CLI, dnsmasq...), answers that directory
 * (Node's os.tmpdir() reads TMPDIR at each call, else /tmp: Node docs, os.tmpdir).
 * Teardown lists what is left in it, removes the directory (ours: made
 * here), puts TMPDIR back, and throws naming each leftover: "everything a
 * test starts it stops" covers the files it makes too (a whole run left 21
 * directories in /tmp, from 10 test files).
 *
 * NODE_COMPILE_CACHE is set to the compile cache set-up warmed (scripts/setup.sh,
 * `<tmpdir>/node-compile-cache`) unless it is set already, so the CLIs
 * tests spawn start as fast as before.
 *
 * Paths a test names outright (`/tmp/<prefix>-lab`, the kernel tier's
 * reused /tmp/nfkernel) are not under it and not checked here: a lab's
 * `down` removes its run dir, and the kernel tier keeps its set-up on
 * purpose (booted once, reused).
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** @returns the teardown: throws Error listing what the run's tests left in their TMPDIR, and sets the exit code to 1. */
export default function setup(): () => void {
  const before = process.env.TMPDIR;
  const dir = mkdtempSync(join(tmpdir(), "nf-test-"));
  // The CLIs' compile cache stays where set-up warmed it (enableCompileCache() takes NODE_COMPILE_CACHE, else <tmpdir>/node-compile-cache).
  const cache = process.env.NODE_COMPILE_CACHE;
  process.env.NODE_COMPILE_CACHE ??= join(tmpdir(), "node-compile-cache");
  process.env.TMPDIR = dir;
  return () => {
    let left: string[] = [];
    try {
      left = readdirSync(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      if (before === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = before;
      if (cache === undefined) delete process.env.NODE_COMPILE_CACHE;
    }
    if (left.length > 0) {
      // Vitest reports an error thrown here but still exits 0: the exit code is set too.
      process.exitCode = 1;
      throw new Error(`tests left ${left.length} entries in their temporary directory ${dir} (removed now; each test must remove what it makes): ${left.sort().join(", ")}`);
    }
  };
}

/**
 * `netfleet serve` stops within 10 s of SIGTERM mid-start, with its
 * nats-server unreachable (issue 15 point 4): the nats-server is frozen
 * (SIGSTOP, it then answers nothing and ignores SIGTERM, as one wedged on a
 * full disk does) as soon as serve logs `nats-started`, before serve has
 * connected; SIGTERM to serve then ends serve and the nats-server (looked
 * for in the process table by pid) within 10 s, with no `ready`. Control: a
 * serve started next on the same state dir and port is ready; frozen the
 * same way while it serves, SIGTERM ends both within 10 s too. Port 32285.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { spawnChild, startServe, stopChild, until, writeInventory, type Child } from "./fuzz-fleet.ts";

const REPO = new URL("../..", import.meta.url).pathname;
const CLI = join(REPO, "packages/controller/src/cli.ts");
const PORT = 32285;
const children: Child[] = [];
const pids: number[] = [];
let dir = "";

afterAll(async () => {
  for (const c of children) await stopChild(c);
  // Only a nats-server still at that pid (never a process that reused it).
  for (const pid of pids) if ((await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).startsWith("nats-server")) process.kill(pid, "SIGKILL");
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The process exists and is not a zombie (proc(5) stat field 3). */
async function running(pid: number): Promise<boolean> {
  const s = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return s !== "" && s.slice(s.lastIndexOf(")") + 2, s.lastIndexOf(")") + 3) !== "Z";
}

describe("serve and SIGTERM", () => {
  it("mid-start and while serving, its nats-server frozen: serve and the server are gone within 10 s; the next start is ready", async () => {
    dir = await mkdtemp(join(tmpdir(), "serve-sig-"));
    const inventoryDir = join(dir, "inventory");
    const stateDir = join(dir, "controller");
    await writeInventory(inventoryDir, `nats://127.0.0.1:${PORT}`);
    const serve = spawnChild("serve", [CLI, "serve", inventoryDir, "--listen", `127.0.0.1:${PORT}`, "--state-dir", stateDir]);
    children.push(serve);
    const started = await serve.log.waitFor((e) => e.event === "nats-started", `nats-started: ${serve.noise.join("")}`, 40_000);
    const natsPid = (started.pids as number[])[0]!;
    pids.push(natsPid);
    process.kill(natsPid, "SIGSTOP");
    const t0 = Date.now();
    serve.child.kill("SIGTERM");
    const code = await Promise.race([serve.exited, new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 10_000))]);
    expect(code).not.toBe("timeout");
    await until(async () => !(await running(natsPid)), `the frozen nats-server pid ${natsPid} is gone`, 10_000 - (Date.now() - t0));
    const ms = Date.now() - t0;
    expect(ms).toBeLessThan(10_000);
    expect(serve.events.some((e) => e.event === "ready")).toBe(false);
    console.log(`serve (exit ${code}) and its frozen nats-server gone ${ms} ms after SIGTERM mid-start`);

    // Control: the state dir and the port are free again.
    const next = await startServe(dir, PORT);
    children.push(next.proc);
    pids.push(next.natsPid);
    expect(next.proc.events.some((e) => e.event === "ready")).toBe(true);

    // Serving, its nats-server wedged (SIGSTOP: answers nothing, ignores SIGTERM, like one stuck on a full disk).
    process.kill(next.natsPid, "SIGSTOP");
    const t1 = Date.now();
    next.proc.child.kill("SIGTERM");
    const code2 = await Promise.race([next.proc.exited, new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 10_000))]);
    expect(code2).not.toBe("timeout");
    await until(async () => !(await running(next.natsPid)), `the wedged nats-server pid ${next.natsPid} is gone`, 10_000 - (Date.now() - t1));
    expect(Date.now() - t1).toBeLessThan(10_000);
    console.log(`serve (exit ${code2}) and its wedged nats-server gone ${Date.now() - t1} ms after SIGTERM while serving`);
  });
});

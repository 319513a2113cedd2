/**
 * The read-only dashboard of `netfleet serve --ui` (issue 17 point 2) on a
 * real serve with its own nats-server: it listens on loopback by default,
 * answers every write method with 405 (no write route exists) beside GET
 * controls that answer 200, refuses a Host header that is not its loopback
 * name (DNS rebinding) beside the same request with its own name, serves a
 * VM's policy and its (empty) audit, and follows a rollout live: the
 * rollout state written to KV through the rollout's own writer
 * (RolloutLock / RolloutStateWriter) reaches an open event stream.
 * Ports: NATS 24100, dashboard 24110 (24111 for the refused remote address).
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ControlPlane } from "@netfleet/controller";
import { controllerOf, SITE, spawnChild, stopChild, until, type Child, type Serve, type ServeSecrets } from "./fuzz-fleet.ts";

const run = promisify(execFile);
const REPO = new URL("../..", import.meta.url).pathname;
const CLI = join(REPO, "packages/controller/src/cli.ts");
const NATS_PORT = 24100;
const UI_PORT = 24110;

/** What one HTTP exchange gave. */
interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request to the dashboard with node:http (fetch may not set Host); `host` overrides the Host header. */
function http(method: string, path: string, o: { host?: string; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: UI_PORT, method, path, headers: { ...(o.host ? { host: o.host } : {}), ...(o.body ? { "content-type": "application/json", "content-length": Buffer.byteLength(o.body) } : {}) }, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on("timeout", () => req.destroy(new Error(`${method} ${path}: no answer in 10 s`)));
    req.on("error", reject);
    req.end(o.body);
  });
}

/** An open GET /api/events: the events parsed so far ({event, data}), and close(). */
function follow(): { events: { event: string; data: unknown }[]; close: () => void; status: Promise<number> } {
  const events: { event: string; data: unknown }[] = [];
  let buffer = "";
  let done!: (n: number) => void;
  const status = new Promise<number>((r) => (done = r));
  const req = request({ host: "127.0.0.1", port: UI_PORT, path: "/api/events", headers: { accept: "text/event-stream" } }, (res) => {
    done(res.statusCode!);
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => {
      buffer += chunk;
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.+)$/m.exec(frame)?.[1];
        const data = /^data: (.+)$/m.exec(frame)?.[1];
        if (event && data) events.push({ event, data: JSON.parse(data) });
      }
    });
  });
  req.on("error", () => {});
  req.end();
  return { events, close: () => req.destroy(), status };
}

/** A site with one VM that has an allow list, an extra address and a port-forward. */
async function writeSite(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "site.yaml"), `site:\n  name: ${SITE}\n  domain: lab.test\n  nats: [nats://127.0.0.1:${NATS_PORT}]\n  management: 10.99.0.0/24\n`);
  await writeFile(
    join(dir, "hosts.yaml"),
    [
      "groups:",
      "  all:",
      "    uplink: { mode: kernel, bond: bond0, members: [eth0], bond_mode: active-backup }",
      "hosts:",
      "  gw1: { groups: [all], role: backend, address: 10.99.0.3, external_interface: wan0 }",
      "  hv1: { groups: [all], role: vmhost, address: 10.99.0.1, networks: [secure] }",
      "",
    ].join("\n"),
  );
  await writeFile(
    join(dir, "networks.yaml"),
    [
      "networks:",
      "  secure:",
      "    vlan: 1081",
      "    cidr: 10.81.0.0/24",
      "    gateway: 10.81.0.1",
      "    egress: allowlist",
      "    vms:",
      "      web1: { mac: 52:54:00:81:0a:01, ip: 10.81.0.11, host: hv1, isolated: true, allow: [{ to: 198.51.100.10 }], extra_addresses: [10.81.0.50] }",
      "    port_forwards:",
      "      - { listen: 8443, vm: web1, port: 443 }",
      "",
    ].join("\n"),
  );
}

const dirs: string[] = [];
const children: Child[] = [];
let serve: Serve;
let cp: ControlPlane;

beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), "nf-ui-"));
  dirs.push(dir);
  const inventoryDir = join(dir, "site");
  const stateDir = join(dir, "controller");
  await writeSite(inventoryDir);
  const proc = spawnChild("serve", [CLI, "serve", inventoryDir, "--listen", `127.0.0.1:${NATS_PORT}`, "--state-dir", stateDir, "--metrics", "off", "--ui", String(UI_PORT)]);
  children.push(proc);
  await until(() => {
    if (proc.child.exitCode !== null) throw new Error(`netfleet serve exited ${proc.child.exitCode}: ${proc.noise.join("").slice(-2000)}`);
    return proc.events.some((e) => e.event === "ready");
  }, "netfleet serve prints its ready line", 40_000);
  const secrets = JSON.parse(await readFile(join(stateDir, "secrets.json"), "utf8")) as ServeSecrets;
  serve = { proc, url: `nats://127.0.0.1:${NATS_PORT}`, stateDir, inventoryDir, secrets } as Serve;
  cp = await controllerOf(serve);
});

afterAll(async () => {
  await cp?.close().catch(() => {});
  for (const c of children) await stopChild(c);
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("netfleet serve --ui: the read-only dashboard (real serve, real nats-server)", () => {
  it("listens on loopback only when given a port, and says where", async () => {
    const listening = serve.proc.events.find((e) => e.event === "ui-listening");
    expect(listening).toMatchObject({ url: `http://127.0.0.1:${UI_PORT}/`, remote: false });
    const { stdout } = await run("ss", ["-ltnH", `sport = :${UI_PORT}`]);
    expect(stdout.trim().split("\n").map((l) => l.trim().split(/\s+/)[3])).toEqual([`127.0.0.1:${UI_PORT}`]);
  });

  it("serves the page with a strict content security policy", async () => {
    const page = await http("GET", "/");
    expect(page.status).toBe(200);
    expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(page.headers["content-security-policy"]).toContain("script-src 'self'");
    expect(page.headers["content-security-policy"]).toContain("frame-ancestors 'none'");
    expect(page.body).toContain('<script src="/ui.js" defer></script>');
    expect((await http("GET", "/ui.js")).status).toBe(200);
    expect((await http("HEAD", "/ui.css")).status).toBe(200);
  });

  it("has no write route: every other method is 405 on every path, GET answers beside it", async () => {
    const paths = ["/", "/ui.js", "/api/status", "/api/rollout", "/api/vms", "/api/vm/web1", "/api/vm/web1/audit", "/api/events", "/api/topology.svg", "/api/hosts/hv1/approve", "/nope"];
    const rolloutBefore = await cp.loadRolloutState();
    for (const path of paths) {
      for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
        const a = await http(method, path, { body: '{"host":"hv1","action":"approve"}' });
        expect(a.status, `${method} ${path}`).toBe(405);
        expect(a.headers.allow).toBe("GET, HEAD");
      }
    }
    // Positive control: the same paths read with GET (those that exist) answer.
    for (const path of ["/", "/api/status", "/api/rollout", "/api/vms", "/api/vm/web1"]) expect((await http("GET", path)).status, `GET ${path}`).toBe(200);
    expect((await http("GET", "/nope")).status).toBe(404);
    // Nothing was written: no rollout state appeared, hv1 is still unenrolled.
    expect(await cp.loadRolloutState()).toEqual(rolloutBefore);
    expect(await cp.registry.get("hv1")).toBeUndefined();
  });

  it("answers only to its loopback name: a rebinding Host is 421, its own name 200", async () => {
    expect((await http("GET", "/api/status", { host: "evil.example" })).status).toBe(421);
    expect((await http("GET", "/api/status", { host: `evil.example:${UI_PORT}` })).status).toBe(421);
    expect((await http("GET", "/api/status", { host: `localhost:${UI_PORT}` })).status).toBe(200);
    expect((await http("GET", "/api/status", { host: `127.0.0.1:${UI_PORT}` })).status).toBe(200);
  });

  it("shows the fleet's status as netfleet status judges it", async () => {
    const s = JSON.parse((await http("GET", "/api/status")).body);
    expect(s.site).toBe(SITE);
    expect(s.hosts.map((h: { host: string; health: string }) => `${h.host} ${h.health}`)).toEqual(["gw1 unreachable", "hv1 unreachable"]);
    expect(s.exitCode).toBe(2);
  });

  it("draws the topology as an SVG that can run nothing when opened on its own", async () => {
    const svg = await http("GET", "/api/topology.svg");
    expect(svg.status).toBe(200);
    expect(svg.headers["content-type"]).toBe("image/svg+xml; charset=utf-8");
    expect(svg.headers["content-security-policy"]).toBe("default-src 'none'; style-src 'unsafe-inline'");
    expect(svg.body.startsWith("<svg")).toBe(true);
    // Hosts never heard from are drawn down (graph/live.ts), the VM is there (Graphviz writes "-" as &#45; in attributes).
    const text = svg.body.replaceAll("&#45;", "-");
    expect(text).toMatch(/<g id="nf-host_3a_gw1" class="cluster nf-host nf-down"/);
    expect(text).toMatch(/<g id="nf-vm_3a_secure_2f_web1" class="node nf-vm\b/);
  });

  it("shows a VM's policy and its audit lines; an unknown or bad name is 404/400", async () => {
    const vm = JSON.parse((await http("GET", "/api/vm/web1")).body);
    expect(vm.nics).toHaveLength(1);
    expect(vm.nics[0]).toMatchObject({
      network: "secure",
      ip: "10.81.0.11",
      host: "hv1",
      egress: "allowlist",
      isolated: true,
      allow: [{ to: "198.51.100.10" }],
      extraAddresses: ["10.81.0.50"],
      forwards: [{ listen: 8443, vm: "web1", port: 443, proto: "tcp" }],
    });
    // Each key's provenance (shared effectivePolicy): isolated is the VM's own key here.
    expect(vm.nics[0].effective.entries.find((e: { key: string }) => e.key === "isolated")).toMatchObject({ value: true, sourceText: "VM" });
    const audit = await http("GET", "/api/vm/web1/audit?since=1h");
    expect(audit.status).toBe(200);
    expect(JSON.parse(audit.body)).toMatchObject({ vm: "web1", records: [], older: 0, lost: 0 });
    expect((await http("GET", "/api/vm/nope")).status).toBe(404);
    expect((await http("GET", "/api/vm/..%2F..%2Fetc")).status).toBe(400);
    expect((await http("GET", "/api/vm/web1/audit?since=yesterday")).status).toBe(400);
  });

  it("follows a rollout live: each state write reaches an open event stream", async () => {
    const stream = follow();
    try {
      expect(await stream.status).toBe(200);
      await until(() => stream.events.some((e) => e.event === "rollout") && stream.events.some((e) => e.event === "status"), "the first status and rollout events", 10_000);
      const now = new Date().toISOString();
      const hostState = (status: "pending" | "applying" | "ok") => ({ role: "vmhost" as const, target: "h1", previous: null, basedOn: 0, status, ...(status === "pending" ? {} : { revision: 1 }) });
      const state = { rolloutId: "ui-test-1", owner: "test", phase: "running" as const, startedAt: now, updatedAt: now, waves: [["hv1"]], completed: [] as string[], failed: [] as string[], hosts: { hv1: hostState("pending") } };
      const writer = cp.rolloutStateWriter(undefined);
      const seen = (status: string) => stream.events.some((e) => e.event === "rollout" && (e.data as { state?: { rolloutId: string; hosts: Record<string, { status: string }> } }).state?.hosts.hv1?.status === status);
      const t0 = Date.now();
      await writer.save(state);
      await until(() => seen("pending"), "hv1 pending on the stream", 10_000);
      await writer.save({ ...state, hosts: { hv1: hostState("applying") } }, new Set(["hv1"]));
      await until(() => seen("applying"), "hv1 applying on the stream", 10_000);
      await writer.save({ ...state, phase: "done", completed: ["hv1"], hosts: { hv1: hostState("ok") } }, new Set(["hv1"]));
      await until(() => seen("ok"), "hv1 ok on the stream", 10_000);
      const last = stream.events.filter((e) => e.event === "rollout").at(-1)!.data as { state: { phase: string; rolloutId: string } };
      expect(last.state).toMatchObject({ rolloutId: "ui-test-1", phase: "done" });
      process.stderr.write(`[ui] three rollout state writes reached the event stream in ${Date.now() - t0} ms\n`);
    } finally {
      stream.close();
    }
  });
});

describe("netfleet serve --ui refuses what it cannot keep safe (usage errors, nothing started)", () => {
  it("a non-loopback --ui without --ui-allow-remote, and --ui-allow-remote without --ui, exit 64", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nf-ui-bad-"));
    dirs.push(dir);
    const site = join(dir, "site");
    await writeSite(site);
    for (const [args, message] of [
      [["--ui", `10.99.0.254:${UI_PORT + 1}`], `--ui 10.99.0.254:${UI_PORT + 1}: 10.99.0.254 is not a loopback address`],
      [["--ui-allow-remote"], "--ui-allow-remote needs --ui ADDRESS:PORT"],
      [["--ui", "nope"], '--ui takes PORT or ADDRESS:PORT (e.g. 127.0.0.1:8470), not "nope"'],
    ] as const) {
      const r = await run("sh", [join(REPO, "scripts/node.sh"), CLI, "serve", site, "--state-dir", join(dir, "controller"), ...args], { cwd: REPO }).then(
        () => ({ code: 0, stderr: "" }),
        (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
      );
      expect(r.code, args.join(" ")).toBe(64);
      expect(r.stderr).toContain(message);
    }
  });

  it("serve --help documents --ui and --ui-allow-remote", async () => {
    const { stdout } = await run("sh", [join(REPO, "scripts/node.sh"), CLI, "serve", "--help"], { cwd: REPO });
    expect(stdout).toMatch(/--ui <addr:port>\s+serve the read-only web dashboard there/);
    expect(stdout).toContain("--ui-allow-remote");
  });
});

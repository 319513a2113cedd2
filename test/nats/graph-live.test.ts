/**
 * `netfleet graph --live` against a real nats-server and fleet members
 * (FleetMember, each with its own NATS user, enrolled with a host token):
 * hosta converged, the backend drifted (its agent still applying the
 * desired revision 2 while it has applied 1), hostb down (its agent
 * stopped, not heard from past --unreachable-after). The picture, read back
 * from the SVG Graphviz drew, has the three colours on the three host boxes,
 * and each element the state its agent's view gives it (views: the agent's
 * show parsers over real captured lab output, agent show/__fixtures__).
 * NATS down: one line, exit 1. NATS client port 24050 (monitoring 24250).
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { observeHost, type PassResult } from "@netfleet/agent";
import { ControlPlane, NatsServer, controllerUser, enrollmentUser, hostTokenKey, mintHostTokenWithKey } from "@netfleet/controller";
import { generateSigningKeys, loadInventory } from "@netfleet/shared";
import { loadCapture } from "../../packages/agent/src/show/fixtures.ts";
import { readSvg } from "../../packages/controller/src/graph/__fixtures__/pictures.ts";
import { STATE_COLORS } from "../../packages/controller/src/graph/index.ts";
import { main } from "../../packages/controller/src/main.ts";
import { memoryOutput } from "../../packages/controller/src/output.ts";
import { SITE, TOKEN, assignmentFor, eventually, startAgent, writeControllerHome, type Site, type TestAgent } from "./harness.ts";

const REPO = new URL("../..", import.meta.url).pathname;
const LAB = join(REPO, "inventories", "lab");
const inventory = loadInventory(LAB);

/** harness startSite with the registry's lastSeen written at every heartbeat, so a separate reader sees hosts alive (as status-exit.test.ts). */
async function startFreshSite(basePort: number): Promise<Site> {
  const dir = await mkdtemp(join(tmpdir(), "nf-graph-live-"));
  const password = randomBytes(18).toString("base64url");
  const enrollPassword = randomBytes(18).toString("base64url");
  const server = await NatsServer.start({ dir: join(dir, "nats"), nodes: 1, basePort, users: [controllerUser("controller", password), enrollmentUser(SITE, enrollPassword)] });
  const signing = generateSigningKeys();
  const credentialsDir = join(dir, "credentials");
  const mintKey = await hostTokenKey(credentialsDir);
  const cp = await ControlPlane.connect({
    site: SITE,
    servers: server.urls,
    user: "controller",
    password,
    hosts: inventory.hosts,
    enrollmentToken: TOKEN,
    enrollmentPassword: enrollPassword,
    signing,
    credentialsDir,
    userDirectory: server,
    lastSeenWriteMs: 100,
  });
  await cp.serve();
  return {
    dir,
    server,
    cp,
    signing,
    enrollPassword,
    controllerPassword: password,
    events: [],
    credentialsDir,
    hostToken: (host, ttlMs) => mintHostTokenWithKey(mintKey, { site: SITE, enrollPassword, host, ...(ttlMs !== undefined ? { ttlMs } : {}) }).token,
    async close() {
      await cp.close().catch(() => {});
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe("netfleet graph --live", () => {
  let site: Site;
  let home: string;
  const agents: TestAgent[] = [];
  let releaseBackend: () => void = () => {};
  const backendGate = new Promise<void>((resolve) => (releaseBackend = resolve));

  beforeAll(async () => {
    site = await startFreshSite(24050);
    const hosta = loadCapture("hosta");
    const backend = loadCapture("backend");
    const ok: PassResult = { summary: { ok: 1, changed: 1, failed: 0, pending: 0 }, results: [{ id: "sysctl[x]", result: true }] };
    for (const name of ["backend", "hosta", "hostb"]) {
      const capture = name === "backend" ? backend : hosta;
      const a = startAgent(site, {
        hostname: name,
        heartbeatMs: 500,
        onShow: () => observeHost({ host: name, runner: capture.runner, tools: capture.tools, files: capture.files }),
        onAssignment: async (assignment, revision) => {
          // The backend is still applying revision 2 when the picture is drawn: desired 2, applied 1.
          if (name === "backend" && revision === 2) await backendGate;
          a.applied.push({ revision, hash: assignment.hash });
          return ok;
        },
      });
      agents.push(a);
    }
    await Promise.all(agents.map((a) => a.started));
    for (const name of ["backend", "hosta", "hostb"]) await site.cp.publish(assignmentFor(name, 1));
    await eventually(async () => (await Promise.all(["backend", "hosta", "hostb"].map((h) => site.cp.lastApplied(h)))).every((r) => r?.revision !== undefined), "every host applied revision 1", 20_000);
    await site.cp.publish(assignmentFor("backend", 2));
    await agents[2]!.client.stop();
    home = await writeControllerHome(site, LAB);
    // hostb's last heartbeat is now over 3 s old (--unreachable-after 3 below).
    await new Promise((r) => setTimeout(r, 4000));
  }, 90_000);

  afterAll(async () => {
    releaseBackend();
    for (const a of agents) await a.client.stop().catch(() => {});
    await site?.close();
  });

  it("one host converged, one drifted, one down: three colours on the host boxes, each element from its agent's view", async () => {
    const file = join(site.dir, "live.svg");
    const out = memoryOutput(true);
    const code = await main(["graph", LAB, "--live", "--state-dir", home, "--unreachable-after", "3", "--timeout", "5", "--out", file, "--json"], out);
    expect(out.stderr).toEqual([]);
    expect(code).toBe(0);
    const doc = out.values[0] as { live: boolean; elements: { id: string; state?: string; reason?: string }[] };
    expect(doc.live).toBe(true);
    const state = Object.fromEntries(doc.elements.map((e) => [e.id, e.state]));
    expect([state["host:hosta"], state["host:backend"], state["host:hostb"]]).toEqual(["converged", "drift", "down"]);
    expect(doc.elements.find((e) => e.id === "host:backend")!.reason).toBe("drift: not at its desired revision");

    const svg = readSvg(await readFile(file, "utf8"));
    for (const [host, s] of [["hosta", "converged"], ["backend", "drift"], ["hostb", "down"]] as const) {
      const box = svg.boxes.get(`host:${host}`)!;
      expect(box.class!.split(" ")).toEqual(["cluster", "nf-host", `nf-${s}`]);
      expect(box.fill).toBe(STATE_COLORS[s].pale);
    }
    // Elements: hosta's all converged (its agent sees each), hostb's all down, the backend's judged by its view.
    const onHosta = doc.elements.filter((x) => x.id.startsWith("hosta/") || (x.id.startsWith("vm:") && ["vma1", "vma2", "vma3", "vma4"].some((v) => x.id.endsWith(`/${v}`))));
    const onHostb = doc.elements.filter((x) => x.id.startsWith("hostb/") || (x.id.startsWith("vm:") && ["vmb1", "vmb2", "vmb3", "vmb4"].some((v) => x.id.endsWith(`/${v}`))));
    // 2 NICs, the bond, br-uplink, 3 patch pairs, 3 bridges and 4 VMs each.
    expect([onHosta.length, onHostb.length]).toEqual([14, 14]);
    for (const e of onHosta) {
      expect(svg.nodes.get(e.id)!.class!.split(" "), e.id).toContain("nf-converged");
      expect(svg.nodes.get(e.id)!.fill, e.id).toBe(STATE_COLORS.converged.fill);
    }
    for (const e of onHostb) {
      expect(svg.nodes.get(e.id)!.class!.split(" "), e.id).toContain("nf-down");
      expect(svg.nodes.get(e.id)!.fill, e.id).toBe(STATE_COLORS.down.fill);
    }
    expect(state["backend/gateway:gateway"]).toBe("converged");
    expect(state["backend/gw:gw-secure"]).toBe("converged");
    expect(state["net:secure"]).toBe("drift");
  });

  it("NATS not reachable: one line naming it, exit 1, no picture written", async () => {
    const stopped = await writeControllerHome(site, LAB);
    const file = join(site.dir, "never.svg");
    const out = memoryOutput(false);
    const code = await main(["graph", LAB, "--live", "--state-dir", stopped, "--nats", "nats://127.0.0.1:24099", "--out", file], out);
    expect(code).toBe(1);
    expect(out.stderr).toHaveLength(1);
    expect(out.stderr[0]).toMatch(/^netfleet graph: cannot use NATS at nats:\/\/127\.0\.0\.1:24099/);
    await expect(readFile(file)).rejects.toThrow(/ENOENT/);
  });
});

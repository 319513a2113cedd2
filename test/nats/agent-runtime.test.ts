import { afterEach, describe, expect, it } from "vitest";
import { SimulatedHostRunner } from "@netfleet/agent/testing";
import { sealAssignment, type HostAssignment } from "@netfleet/shared";
import { SITE, eventually, inventoryHost, killProcess, spawnSimAgent, startSimAgent, startSite, type AgentProcess, type Site, type SimAgent } from "./harness.ts";

let site: Site | undefined;
const agents: SimAgent[] = [];
const procs: AgentProcess[] = [];
afterEach(async () => {
  for (const p of procs.splice(0)) await killProcess(p, "SIGTERM");
  for (const a of agents.splice(0)) await a.agent.stop();
  await site?.close();
  site = undefined;
});

/** A sysctl-only assignment: `values` are set on the simulated host. */
function sysctls(host: string, values: Record<string, string>): HostAssignment {
  return sealAssignment({
    apiVersion: "netfleet.dev/v1",
    kind: "HostAssignment",
    site: SITE,
    host,
    role: "vmhost",
    resources: Object.entries(values).map(([name, value]) => ({ kind: "sysctl" as const, name, value })),
  });
}

describe("the agent runtime (NatsAgent: engine + daemon) on real nats-server", () => {
  it("applies with the engine, reports per-resource results and heartbeats, repairs drift and reports it as corrective", async () => {
    site = await startSite({ basePort: 31600, hosts: [inventoryHost("hv1")] });
    const sim = startSimAgent(site, { hostname: "hv1", intervalMs: 400 });
    agents.push(sim);
    await sim.started;
    const p = await site.cp.publish(sysctls("hv1", { "net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "2" }));
    const report = await site.cp.waitForApplied("hv1", p.revision, 10_000);
    expect(report).toMatchObject({ revision: p.revision, hash: p.hash, rolledBack: false, summary: { ok: 2, changed: 2, failed: 0 } });
    expect(report.results.map((r) => r.id).sort()).toEqual(["sysctl[net.ipv4.conf.all.rp_filter]", "sysctl[net.ipv4.ip_forward]"]);
    expect(sim.host.get("net.ipv4.ip_forward")).toBe("1");

    // Heartbeats keep lastSeen fresh.
    const before = (await site.cp.status()).find((r) => r.host === "hv1")!.lastSeen!;
    await eventually(async () => ((await site!.cp.status()).find((r) => r.host === "hv1")!.lastSeen ?? "") > before, "a heartbeat moves lastSeen");

    // Someone changes the host behind the agent's back: the periodic pass repairs it and says so.
    sim.host.set("net.ipv4.ip_forward", "0");
    await eventually(async () => (await site!.cp.applied.read("hv1"))?.corrective !== undefined, "a corrective report", 10_000);
    const corrective = (await site.cp.applied.read("hv1"))!;
    expect(corrective).toMatchObject({ revision: p.revision, corrective: ["sysctl[net.ipv4.ip_forward]"], summary: { failed: 0 } });
    expect(sim.host.get("net.ipv4.ip_forward")).toBe("1");
    expect(sim.events.some((e) => e.event === "drift-repaired")).toBe(true);
    const row = (await site.cp.status()).find((r) => r.host === "hv1");
    expect(row).toMatchObject({ drift: false, applied: { revision: p.revision } });
  });

  it("reports a resource that fails, and keeps the host as it is when NATS goes away, resyncing when it is back", async () => {
    site = await startSite({ basePort: 31610, hosts: [inventoryHost("hv1")] });
    const host = new SimulatedHostRunner({ failWrites: /^kernel\.forbidden=/ });
    const sim = startSimAgent(site, { hostname: "hv1", host, confirmDeadlineMs: 3000 });
    agents.push(sim);
    await sim.started;
    const p = await site.cp.publish(sysctls("hv1", { "net.ipv4.ip_forward": "1", "kernel.forbidden": "1" }));
    const report = await site.cp.waitForApplied("hv1", p.revision, 10_000);
    expect(report.summary).toMatchObject({ ok: 1, failed: 1 });
    expect(report.results.find((r) => r.id === "sysctl[kernel.forbidden]")).toMatchObject({ result: false, comment: expect.stringMatching(/permission denied/) });

    // NATS gone for longer than the confirm deadline while nothing is being applied: nothing is undone.
    await site.server.kill("nf-1");
    await new Promise((r) => setTimeout(r, 4000));
    expect(host.get("net.ipv4.ip_forward")).toBe("1");
    await site.server.restart("nf-1");
    await eventually(() => sim.events.some((e) => e.event === "reconnected"), "reconnected", 15_000);
    // What was published meanwhile... here, after: the agent picks it up.
    const next = await site.cp.publish(sysctls("hv1", { "net.ipv4.ip_forward": "1", "net.ipv4.tcp_syncookies": "1" }));
    await site.cp.waitForApplied("hv1", next.revision, 15_000);
    expect(host.get("net.ipv4.tcp_syncookies")).toBe("1");
    expect(sim.events.filter((e) => e.event === "lockout-rollback")).toEqual([]);
  });

  it("converges after being SIGKILLed in the middle of an apply", async () => {
    site = await startSite({ basePort: 31620, hosts: [inventoryHost("hv1")] });
    let proc = spawnSimAgent(site, { hostname: "hv1", delayMs: 150 });
    procs.push(proc);
    await eventually(() => proc.events.some((e) => e.event === "ready"), "agent ready", 20_000);
    const values = Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`net.sim.k${i}`, String(i + 1)]));
    const p = await site.cp.publish(sysctls("hv1", values));
    // 12 resources x (observe, write, observe) x 150 ms: kill it part way.
    await eventually(() => proc.events.some((e) => e.event === "applying"), "apply started", 10_000);
    await new Promise((r) => setTimeout(r, 1200));
    await killProcess(proc);
    procs.splice(procs.indexOf(proc), 1);
    expect((await site.cp.applied.read("hv1"))?.revision ?? 0).toBeLessThan(p.revision);

    proc = spawnSimAgent(site, { hostname: "hv1", delayMs: 5 });
    procs.push(proc);
    const report = await site.cp.waitForApplied("hv1", p.revision, 30_000);
    expect(report).toMatchObject({ revision: p.revision, rolledBack: false, summary: { ok: 12, failed: 0 } });
    expect(report.summary.changed).toBeLessThan(12);
    expect(proc.events.some((e) => e.event === "unconfirmed-revision-dropped")).toBe(true);
  });
});

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { afterEach, describe, expect, it } from "vitest";
import type { HostStatus } from "@netfleet/controller";
import { statusCommand } from "../../packages/controller/src/commands/hosts.ts";
import { memoryOutput } from "../../packages/controller/src/output.ts";
import { AgentCredentials, correctiveBucket, decodeMessage, directGetSubject, kvStream, kvSubject, sealAssignment, type CorrectiveLog, type HostAssignment } from "@netfleet/shared";
import { SITE, eventually, inventoryHost, startAgent, startSimAgent, startSite, type Site, type SimAgent, type TestAgent } from "./harness.ts";

let site: Site | undefined;
const sims: SimAgent[] = [];
const agents: TestAgent[] = [];
const conns: NatsConnection[] = [];
afterEach(async () => {
  for (const c of conns.splice(0)) await c.close();
  for (const a of sims.splice(0)) await a.agent.stop();
  for (const a of agents.splice(0)) await a.client.stop();
  await site?.close();
  site = undefined;
});

const CORRECTIVE = correctiveBucket(SITE);

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

/** `netfleet status --json` (the command's function, on the site's controller connection): the document it prints. */
async function statusJson(s: Site): Promise<{ hosts: HostStatus[] }> {
  const out = memoryOutput(true);
  expect([0, 1]).toContain(await statusCommand(s.cp, out));
  // Through JSON, as the CLI prints it.
  return JSON.parse(JSON.stringify(out.values[0])) as { hosts: HostStatus[] };
}

async function row(s: Site, host: string): Promise<HostStatus> {
  return (await statusJson(s)).hosts.find((h) => h.host === host)!;
}

/** A raw connection with an agent's own credentials, recording the server's permission errors. */
async function asAgent(s: Site, host: string): Promise<{ nc: NatsConnection; errors: string[] }> {
  const creds = decodeMessage(AgentCredentials, "creds", await readFile(join(s.dir, "agents", host, "credentials.json"), "utf8"));
  const nc = await connect({ servers: s.server.urls, user: creds.user, pass: creds.password, inboxPrefix: creds.inboxPrefix });
  conns.push(nc);
  const errors: string[] = [];
  void (async () => {
    for await (const st of nc.status()) if (st.type === "error") errors.push(String((st as { error?: Error }).error?.message));
  })();
  return { nc, errors };
}

describe("corrective drift in netfleet status (real nats-server, the real agent runtime on a simulated host)", () => {
  it("a repair's before/after reaches status --json, survives later converged reports, and the count goes on (also across an agent restart)", async () => {
    site = await startSite({ basePort: 32210, hosts: [inventoryHost("hv1")] });
    const sim = startSimAgent(site, { hostname: "hv1", intervalMs: 300 });
    sims.push(sim);
    await sim.started;
    const first = await site.cp.publish(sysctls("hv1", { "net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "2" }));
    await site.cp.waitForApplied("hv1", first.revision, 10_000);
    // An apply is not drift: nothing corrective yet.
    expect((await row(site, "hv1")).corrective).toEqual({ count: 0, last: null, changes: [], at: null });

    const before = new Date().toISOString();
    sim.host.set("net.ipv4.ip_forward", "0");
    await eventually(async () => (await row(site!, "hv1")).corrective.count === 1, "the repair counted in status", 10_000);
    const after = new Date().toISOString();
    let r = await row(site, "hv1");
    expect(r.corrective.last).toEqual({ id: "sysctl[net.ipv4.ip_forward]", at: expect.any(String), corrective: true, changes: [{ field: "value", before: "0", after: "1" }] });
    expect(r.corrective.last!.at >= before && r.corrective.last!.at <= after).toBe(true);
    expect(r.corrective.changes).toEqual([r.corrective.last]);
    expect(sim.host.get("net.ipv4.ip_forward")).toBe("1");
    // The corrective report itself carries the same detail.
    const report = await site.cp.applied.read("hv1");
    expect(report).toMatchObject({ corrective: ["sysctl[net.ipv4.ip_forward]"], correctiveChanges: [{ id: "sysctl[net.ipv4.ip_forward]", changes: [{ before: "0", after: "1" }] }] });

    // A later apply writes a converged report over the applied record: the corrective history stays.
    const second = await site.cp.publish(sysctls("hv1", { "net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "1" }));
    const converged = await site.cp.waitForApplied("hv1", second.revision, 10_000);
    expect(converged.corrective).toBeUndefined();
    r = await row(site, "hv1");
    expect(r.applied?.revision).toBe(second.revision);
    expect(r.corrective).toMatchObject({ count: 1, last: { id: "sysctl[net.ipv4.ip_forward]" } });

    // A second repair: the count goes on, newest first.
    sim.host.set("net.ipv4.conf.all.rp_filter", "0");
    await eventually(async () => (await row(site!, "hv1")).corrective.count === 2, "the second repair counted", 10_000);
    r = await row(site, "hv1");
    expect(r.corrective.changes.map((c) => [c.id, c.changes[0]!.before, c.changes[0]!.after])).toEqual([
      ["sysctl[net.ipv4.conf.all.rp_filter]", "0", "1"],
      ["sysctl[net.ipv4.ip_forward]", "0", "1"],
    ]);
    // Passes that repair nothing leave it as it is.
    const passes = sim.events.filter((e) => e.event === "reconcile").length;
    await eventually(() => sim.events.filter((e) => e.event === "reconcile").length >= passes + 3, "three more passes", 10_000);
    expect((await row(site, "hv1")).corrective.count).toBe(2);

    // The human status shows the count and the last repair.
    const text = memoryOutput(false);
    expect(await statusCommand(site.cp, text)).toBe(0);
    const line = text.stdout.findIndex((l) => l.startsWith("hv1 "));
    // REPAIRED 2, then the AGENT column ("-": a simulated agent reports no version), then the result.
    expect(text.stdout[line]).toMatch(/ no {5}2 {9}- +\d+ ok/);
    expect(text.stdout[line + 1]).toMatch(/^ {2}last repaired sysctl\[net\.ipv4\.conf\.all\.rp_filter\] \S+ ago \(.*\): value 0 → 1$/);

    // A restarted agent (same state dir) goes on from what its key holds.
    await sim.agent.stop();
    sims.splice(sims.indexOf(sim), 1);
    const again = startSimAgent(site, { hostname: "hv1", host: sim.host, intervalMs: 300 });
    sims.push(again);
    await again.started;
    await eventually(() => again.events.some((e) => e.event === "reconcile"), "the restarted agent's first pass", 10_000);
    sim.host.set("net.ipv4.ip_forward", "0");
    await eventually(async () => (await row(site!, "hv1")).corrective.count === 3, "the third repair counted after a restart", 10_000);
    expect((await row(site, "hv1")).corrective.changes.map((c) => c.id)).toEqual(["sysctl[net.ipv4.ip_forward]", "sysctl[net.ipv4.conf.all.rp_filter]", "sysctl[net.ipv4.ip_forward]"]);
  });

  it("repairs made while NATS is away reach status once it is back: all counted, the last 20 kept", async () => {
    site = await startSite({ basePort: 32240, hosts: [inventoryHost("hv1")] });
    const sim = startSimAgent(site, { hostname: "hv1", intervalMs: 300 });
    sims.push(sim);
    await sim.started;
    const names = Array.from({ length: 25 }, (_, i) => `net.sim.k${String(i).padStart(2, "0")}`);
    const p = await site.cp.publish(sysctls("hv1", Object.fromEntries(names.map((n) => [n, "1"]))));
    await site.cp.waitForApplied("hv1", p.revision, 10_000);

    await site.server.kill("nf-1");
    for (const n of names) sim.host.set(n, "0");
    await eventually(() => names.every((n) => sim.host.get(n) === "1"), "all 25 repaired while NATS is away", 10_000);
    expect(sim.agent.journal.unsent).toBe(20);
    await site.server.restart("nf-1");

    await eventually(async () => (await row(site!, "hv1").catch(() => undefined))?.corrective.count === 25, "the repairs counted once NATS is back", 30_000);
    const r = await row(site, "hv1");
    expect(r.corrective.changes).toHaveLength(20);
    // Newest first; one pass repaired them all, in the assignment's order: the first five are counted, not kept.
    expect(r.corrective.changes.map((c) => c.id).reverse()).toEqual(names.slice(5).map((n) => `sysctl[${n}]`));
    expect(sim.agent.journal.unsent).toBe(0);
  });

  it("a host cannot write or read another host's corrective record (its own it can)", async () => {
    site = await startSite({ basePort: 32220, hosts: [inventoryHost("hv1"), inventoryHost("hv2")] });
    const hv1 = startSimAgent(site, { hostname: "hv1", intervalMs: 300 });
    sims.push(hv1);
    agents.push(startAgent(site, { hostname: "hv2" }));
    await Promise.all([hv1.started, agents[0]!.started]);
    const p = await site.cp.publish(sysctls("hv1", { "net.ipv4.ip_forward": "1" }));
    await site.cp.waitForApplied("hv1", p.revision, 10_000);
    hv1.host.set("net.ipv4.ip_forward", "0");
    await eventually(async () => (await row(site!, "hv1")).corrective.count === 1, "hv1's repair recorded", 10_000);
    const kv = await new Kvm(site.cp.nc).open(CORRECTIVE);
    const stored = await kv.get("hv1");
    const victimRevision = stored!.revision;

    // Everything written to the bucket, seen at the target (the stream's subjects), by the controller.
    const seen: string[] = [];
    const spy = site.cp.nc.subscribe(`$KV.${CORRECTIVE}.>`);
    void (async () => {
      for await (const m of spy) seen.push(`${m.subject} ${m.string()}`);
    })();
    await site.cp.nc.flush();

    const a = await asAgent(site, "hv2");
    const forged: CorrectiveLog = { kind: "corrective-log", site: SITE, host: "hv1", count: 0, recent: [], at: new Date().toISOString() };
    // Attack: hv2 overwrites hv1's record (a put is a publish to hv1's key subject; JetStream would answer with an ack).
    await expect(a.nc.request(kvSubject(CORRECTIVE, "hv1"), JSON.stringify(forged), { timeout: 2000 })).rejects.toThrow(/Permissions Violation for Publish/);
    // ... or reads it.
    await expect(a.nc.request(directGetSubject(CORRECTIVE, "hv1"), "", { timeout: 2000 })).rejects.toThrow(/Permissions Violation for Publish/);
    await expect(a.nc.request(`$JS.API.DIRECT.GET.${kvStream(CORRECTIVE)}`, JSON.stringify({ last_by_subj: kvSubject(CORRECTIVE, "hv1") }), { timeout: 2000 })).rejects.toThrow(/Permissions Violation/);
    // ... or wipes the bucket with a rollup from its own key: refused by the stream (a put to one's own key is allowed, the header is not).
    const rollupHeaders = headers();
    rollupHeaders.set("Nats-Rollup", "all");
    const rollup = await a.nc.request(kvSubject(CORRECTIVE, "hv2"), JSON.stringify({ ...forged, host: "hv2" }), { timeout: 2000, headers: rollupHeaders });
    expect(JSON.parse(rollup.string())).toMatchObject({ error: { description: expect.stringMatching(/rollup not permitted/i) } });

    // Positive control: hv2 writes and reads its own key with the same connection.
    const own = { ...forged, host: "hv2", count: 4, recent: [{ id: "sysctl[x]", at: new Date().toISOString(), corrective: true as const, changes: [{ field: "value", before: "2", after: "1" }] }] };
    const ack = await a.nc.request(kvSubject(CORRECTIVE, "hv2"), JSON.stringify(own), { timeout: 2000 });
    expect(JSON.parse(ack.string())).toMatchObject({ stream: kvStream(CORRECTIVE), seq: expect.any(Number) });
    const back = await a.nc.request(directGetSubject(CORRECTIVE, "hv2"), "", { timeout: 2000 });
    expect(JSON.parse(back.string())).toMatchObject({ host: "hv2", count: 4 });

    // At the target: hv1's record is untouched, nothing but hv2's own write reached the bucket, status shows each host its own.
    await site.cp.nc.flush();
    expect((await kv.get("hv1"))!.revision).toBe(victimRevision);
    // hv2's own subject carried its rollup attempt (refused by the stream) and its write; hv1's carried nothing.
    expect(seen.map((m) => m.split(" ")[0])).toEqual([kvSubject(CORRECTIVE, "hv2"), kvSubject(CORRECTIVE, "hv2")]);
    const status = await statusJson(site);
    expect(status.hosts.find((h) => h.host === "hv1")!.corrective).toMatchObject({ count: 1, last: { id: "sysctl[net.ipv4.ip_forward]" } });
    expect(status.hosts.find((h) => h.host === "hv2")!.corrective).toMatchObject({ count: 4, last: { id: "sysctl[x]" } });
    expect(a.errors.some((e) => e.includes(`Permissions Violation for Publish to "${kvSubject(CORRECTIVE, "hv1")}"`))).toBe(true);

    // A record in one's own key that names another host is not shown as that host's (nor as its own).
    const lying = await a.nc.request(kvSubject(CORRECTIVE, "hv2"), JSON.stringify({ ...own, host: "hv1", count: 99 }), { timeout: 2000 });
    expect(JSON.parse(lying.string())).toMatchObject({ seq: expect.any(Number) });
    const after = await statusJson(site);
    expect(after.hosts.find((h) => h.host === "hv1")!.corrective.count).toBe(1);
    expect(after.hosts.find((h) => h.host === "hv2")!.corrective).toMatchObject({ count: 0, error: "record names lab/hv1" });
    spy.unsubscribe();
  });

  it("warnings in the last report's comments (foreign-drop: ...) reach status", async () => {
    site = await startSite({ basePort: 32230, hosts: [inventoryHost("hv1")] });
    const warned = "foreign-drop: table ip filter chain FORWARD (policy drop) drops forwarded traffic that table inet netfleet accepts";
    const a = startAgent(site, {
      hostname: "hv1",
      onAssignment: async () => ({
        summary: { ok: 2, changed: 1, failed: 0, pending: 0 },
        results: [
          { id: "nft-table[netfleet]", result: true, comment: `changed; ${warned}` },
          { id: "sysctl[net.ipv4.ip_forward]", result: true, comment: "in desired state" },
        ],
      }),
    });
    agents.push(a);
    await a.started;
    const p = await site.cp.publish(sysctls("hv1", { "net.ipv4.ip_forward": "1" }));
    await site.cp.waitForApplied("hv1", p.revision, 10_000);
    const r = await row(site, "hv1");
    expect(r.warnings).toEqual([{ id: "nft-table[netfleet]", message: warned }]);
    const text = memoryOutput(false);
    await statusCommand(site.cp, text);
    expect(text.stdout).toContain(`  warning nft-table[netfleet]: ${warned}`);
  });
});

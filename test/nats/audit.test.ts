import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditCollector } from "@netfleet/agent";
import { readAudit } from "@netfleet/controller";
import { auditStream, auditSubject, encodeMessage, leasesBucket, type AuditBatch, type AuditRecord, type Inventory } from "@netfleet/shared";
import { Kvm } from "@nats-io/kv";
import { auditCommand } from "../../packages/controller/src/commands/audit.ts";
import type { AuditLine } from "../../packages/controller/src/store/vm-audit.ts";
import { main } from "../../packages/controller/src/main.ts";
import { memoryOutput } from "../../packages/controller/src/output.ts";
import { SITE, agentFileConnection, eventually, inventoryHost, startAgent, startSite, writeControllerHome, type RecordingConnection, type Site, type TestAgent } from "./harness.ts";

const REPO = new URL("../..", import.meta.url).pathname;
/** Captured from the kernel (see audit-nflog.test.ts): VM 52:54:00:07:00:02 / 10.7.0.2 in network "x": ping, TCP :80, TCP :81 dropped, UDP :53. */
const FIXTURE = join(REPO, "packages/agent/src/gateway/fixtures/nflog-v4.pcap");

/** Only what auditedNics reads of an inventory: network "x" with the capture's VM (no static ip: found by MAC) and one known by its lease. */
const inventoryX = {
  dir: "(test)",
  networks: [
    {
      name: "x",
      vms: [
        { name: "vmx", mac: "52:54:00:07:00:02", extra_addresses: [] },
        { name: "web", mac: "52:54:00:08:00:02", extra_addresses: [] },
      ],
    },
  ],
} as unknown as Inventory;

function batch(host: string, network: string, records: Partial<AuditRecord>[]): AuditBatch {
  return {
    kind: "audit",
    site: SITE,
    host,
    network,
    lost: 0,
    records: records.map((r) => ({ time: new Date().toISOString(), network, verdict: "allow", src: "10.81.0.11", dst: "203.0.113.10", proto: "tcp", sport: 40000, dport: 80, ...r }) as AuditRecord),
  };
}

async function expectPublishDenied(c: RecordingConnection, subject: string, data: Uint8Array): Promise<void> {
  c.nc.publish(subject, data);
  await c.nc.flush();
  await eventually(() => c.errors.some((e) => e.includes(`Permissions Violation for Publish to "${subject}"`)), `publish to ${subject} refused`, 3000);
}

async function storedBatches(site: Site): Promise<number> {
  return (await (await jetstreamManager(site.cp.nc)).streams.info(auditStream(SITE))).state.messages;
}

describe("gateway audit over NATS (real nats-server)", () => {
  let site: Site;
  const agents: TestAgent[] = [];
  let backend: RecordingConnection;
  let vmhost: RecordingConnection;
  let stateDir: string;

  beforeAll(async () => {
    site = await startSite({ basePort: 32450, hosts: [{ ...inventoryHost("backend"), role: "backend" }, inventoryHost("hosta"), inventoryHost("hostb")] });
    for (const hostname of ["backend", "hosta"]) agents.push(startAgent(site, { hostname }));
    await Promise.all(agents.map((a) => a.started));
    backend = await agentFileConnection(site, "backend");
    vmhost = await agentFileConnection(site, "hosta");
    stateDir = await writeControllerHome(site, join(REPO, "inventories", "lab"));
  });

  afterAll(async () => {
    await backend?.nc.close();
    await vmhost?.nc.close();
    for (const a of agents) await a.client.stop();
    await site?.close();
  });

  it("records captured from nflog reach `netfleet audit`: reached and refused, oldest first, found by MAC and by DHCP lease; a full queue's loss is reported", async () => {
    const events: Record<string, unknown>[] = [];
    // The capture child stands in for tcpdump: it writes the kernel's capture and stays up (stopped by pid).
    const collector = new AuditCollector({ site: SITE, host: () => "backend", captureArgv: () => ["tail", "-c", "+1", "-f", FIXTURE], maxQueue: 3, log: (e) => events.push(e) });
    collector.attach(backend.nc);
    collector.configure([{ network: "x", group: 7 }]);
    const pid = collector.running()[0]!.pid!;
    expect(pid).toBeGreaterThan(0);
    await eventually(() => collector.stats.published === 3, "three records published (the queue holds three)", 10_000);
    expect(collector.stats).toMatchObject({ records: 4, published: 3, lost: 1, restarts: 0 });
    await collector.stop();
    expect(() => process.kill(pid, 0)).toThrow(); // the child is gone
    expect(backend.errors).toEqual([]);

    // The capture's records carry the kernel's time of the day it was taken.
    const since = new Date(0);
    const out = memoryOutput(true);
    expect(await auditCommand(site.cp, inventoryX, "vmx", since, out)).toBe(0);
    const result = out.values[0] as { records: AuditLine[]; lost: number; nics: { addresses: string[] }[] };
    expect(result.records.map((r) => [r.verdict, r.direction, r.proto, r.dst, r.dport ?? null])).toEqual([
      ["allow", "out", "icmp", "10.8.0.2", null],
      ["allow", "out", "tcp", "10.8.0.2", 80],
      ["drop", "out", "tcp", "10.8.0.2", 81],
    ]);
    expect(result.records.every((r) => r.host === "backend" && r.src === "10.7.0.2" && r.network === "x")).toBe(true);
    expect(result.lost).toBe(1);
    expect(result.nics[0]!.addresses).toEqual([]); // no static ip, no lease: matched by the frame's MAC

    // "web" has no static ip: without a lease nothing is known of it; with its lease the packets sent to it are its "in" lines.
    const before = memoryOutput(true);
    await auditCommand(site.cp, inventoryX, "web", since, before);
    expect((before.values[0] as { records: unknown[] }).records).toEqual([]);
    const kv = await new Kvm(site.cp.nc).open(leasesBucket(SITE));
    await kv.put("backend", JSON.stringify({ host: "backend", at: Date.now(), networks: { x: [{ mac: "52:54:00:08:00:02", ip: "10.8.0.2", expires: Math.floor(Date.now() / 1000) + 3600 }] } }));
    const text = memoryOutput(false);
    await auditCommand(site.cp, inventoryX, "web", since, text);
    expect(text.stdout[0]).toContain("x 52:54:00:08:00:02 10.8.0.2");
    expect(text.stdout.slice(1, 4)).toEqual([
      expect.stringMatching(/^\S+Z {2}reached {2}in {3}icmp {4}10\.7\.0\.2 -> 10\.8\.0\.2 type 8\/0 {2}\(x at backend\)$/),
      expect.stringMatching(/reached {2}in {3}tcp {5}10\.7\.0\.2:\d+ -> 10\.8\.0\.2:80 /),
      expect.stringMatching(/refused {2}in {3}tcp {5}10\.7\.0\.2:\d+ -> 10\.8\.0\.2:81 /),
    ]);
    expect(text.stdout).toContain("2 reached, 1 refused");
    expect(text.stdout.some((l) => l.startsWith("warning: the gateway's collectors lost 1 records"))).toBe(true);
  });

  it("a stolen VM-host credential cannot publish audit records, for its backend or itself; the backend's own publish (control) is stored and shown", async () => {
    const forged = encodeMessage(batch("backend", "secure", [{ dst: "198.51.100.66", verdict: "allow" }]));
    const stored = await storedBatches(site);
    await expectPublishDenied(vmhost, auditSubject(SITE, "backend", "secure"), forged);
    await expectPublishDenied(vmhost, auditSubject(SITE, "hosta", "secure"), encodeMessage(batch("hosta", "secure", [{ dst: "198.51.100.66" }])));
    // The backend may not speak for another host either.
    await expectPublishDenied(backend, auditSubject(SITE, "hosta", "secure"), encodeMessage(batch("hosta", "secure", [{ dst: "198.51.100.66" }])));
    // Nor may any agent read the audit: no subscription, no JetStream API.
    for (const c of [vmhost, backend]) {
      const sub = c.nc.subscribe(auditSubject(SITE, "*", "*"));
      const closed = await Promise.race([sub.closed, new Promise((r) => setTimeout(() => r("still open"), 2000))]);
      expect(String((closed as Error | undefined)?.message ?? closed)).toMatch(/Permissions Violation for Subscription/);
      await expect(c.nc.request(`$JS.API.CONSUMER.CREATE.${auditStream(SITE)}`, JSON.stringify({ stream_name: auditStream(SITE), config: { ack_policy: "none" } }), { timeout: 2000 })).rejects.toThrow(/Permissions Violation/);
    }
    // At the target: nothing landed in the stream.
    expect(await storedBatches(site)).toBe(stored);

    // Control: the backend's own credential, same kind of batch, its own subject: acknowledged and stored.
    const ack = await backend.nc.request(auditSubject(SITE, "backend", "secure"), encodeMessage(batch("backend", "secure", [{ dst: "198.51.100.77" }, { dst: "198.51.100.78", verdict: "drop", dport: 25 }])), { timeout: 2000 });
    expect(JSON.parse(ack.string())).toMatchObject({ stream: auditStream(SITE) });
    expect(await storedBatches(site)).toBe(stored + 1);
    // A batch on its own subject that names another host is stored but refused by the reader.
    await backend.nc.request(auditSubject(SITE, "backend", "secure"), encodeMessage(batch("hosta", "secure", [{ dst: "198.51.100.79" }])), { timeout: 2000 });

    // A record logged before --since, stored now (held back while NATS was away), is outside the window asked for.
    await backend.nc.request(auditSubject(SITE, "backend", "secure"), encodeMessage(batch("backend", "secure", [{ dst: "198.51.100.80", time: new Date(Date.now() - 2 * 3600_000).toISOString() }])), { timeout: 2000 });

    // Through the CLI, on the lab inventory: vma1 (10.81.0.11) reached .77 and was refused .78:25; .66, .79 and .80 appear nowhere.
    const out = memoryOutput(true);
    expect(await main(["audit", "vma1", join(REPO, "inventories", "lab"), "--state-dir", stateDir, "--since", "10m", "--json"], out)).toBe(0);
    const result = out.values[0] as { records: AuditLine[]; invalid: string[] };
    expect(result.records.map((r) => [r.verdict, r.dst, r.dport])).toEqual([
      ["allow", "198.51.100.77", 80],
      ["drop", "198.51.100.78", 25],
    ]);
    expect(result.invalid).toEqual([expect.stringContaining("names another host")]);
    const all = await readAudit(site.cp.nc, SITE, { networks: ["secure", "x"], since: new Date(0), match: () => true });
    expect(all.records.map((r) => r.dst)).not.toContain("198.51.100.66");
    expect(all.records.map((r) => r.dst)).not.toContain("198.51.100.79");
    expect(all.records.map((r) => r.dst)).toContain("198.51.100.80"); // stored; only the window left it out
  });

  it("refuses what it cannot answer: an unknown VM (2), a bad --since (64)", async () => {
    const unknown = memoryOutput(false);
    expect(await main(["audit", "nosuchvm", join(REPO, "inventories", "lab"), "--state-dir", stateDir], unknown)).toBe(2);
    expect(unknown.stderr.join("\n")).toMatch(/no VM named "nosuchvm"/);
    const bad = memoryOutput(false);
    expect(await main(["audit", "vma1", "--since", "yesterday", "--state-dir", stateDir], bad)).toBe(64);
    expect(bad.stderr.join("\n")).toMatch(/--since takes a duration/);
  });
});

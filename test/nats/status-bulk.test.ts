import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HostStatus } from "@netfleet/controller";
import { agentBucket, appliedBucket, correctiveBucket, desiredBucket, encodeMessage, runKey, sealAssignment } from "@netfleet/shared";
import { statusCommand } from "../../packages/controller/src/commands/hosts.ts";
import { memoryOutput } from "../../packages/controller/src/output.ts";
import { BULK_STATUS_HOSTS } from "../../packages/controller/src/store/status-read.ts";
import { SITE, inventoryHost, simFacts, startSite, type Site } from "./harness.ts";

/**
 * `netfleet status` over more than BULK_STATUS_HOSTS hosts reads each bucket
 * whole (store/status-read.ts) instead of a get per host and bucket: the
 * rows must be the same as the per-host reads give (a `--limit` of a few
 * hosts takes that path), junk included: a value that does not decode, a
 * report or agent report naming another host, a desired value of another
 * host, the signing chain's key. Real nats-server, stores written as the
 * controller and the agents write them.
 */
const N = BULK_STATUS_HOSTS + 8;
const names = Array.from({ length: N }, (_, i) => `hv${i + 1}`);
const KEY = "MCowBQYDK2VuAyEA" + "A".repeat(43) + "=";
let site: Site | undefined;

beforeAll(async () => {
  site = await startSite({ basePort: 27310, hosts: names.map((n) => inventoryHost(n)) });
  const cp = site.cp;
  const kvm = new Kvm(cp.nc);
  const applied = await kvm.open(appliedBucket(SITE));
  const corrective = await kvm.open(correctiveBucket(SITE));
  const desired = await kvm.open(desiredBucket(SITE));
  const agents = await kvm.create(agentBucket(SITE), { history: 1 });
  const now = new Date().toISOString();
  const facts = await simFacts();
  for (const [i, host] of names.entries()) {
    // hv1..hv3 never enrolled; the rest approved.
    if (i >= 3) await cp.registry.mutate(host, () => ({ host, inventory: true, state: "approved", reason: null, matchedBy: "token", facts: { kind: "enroll", site: SITE, hostname: host, agentVersion: "0.1.0", ...facts, publicKey: KEY, sentAt: now }, claimKey: KEY, approvedKey: KEY, firstSeen: now, lastSeen: now, approvedAt: now }));
    const assignment = sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: SITE, host, role: "vmhost", resources: [{ kind: "sysctl", name: "net.t.k", value: String(i) }] });
    if (i % 5 !== 0) await cp.publish(assignment);
    if (i % 3 === 0) {
      const failed = i % 2 === 0;
      await applied.put(host, encodeMessage({ kind: "report", site: SITE, host, revision: 1, hash: assignment.hash, rolledBack: false, at: now, summary: { ok: failed ? 0 : 1, changed: 0, failed: failed ? 1 : 0, pending: 0 }, results: [{ id: "sysctl[net.t.k]", result: !failed, comment: failed ? "denied" : "foreign-drop: 2 rules" }] }));
    }
    if (i % 4 === 0) await corrective.put(host, encodeMessage({ kind: "corrective-log", site: SITE, host, count: i, recent: [{ id: "sysctl[net.t.k]", at: now, corrective: true, changes: [{ field: "value", before: "0", after: String(i) }] }], at: now }));
    if (i % 7 === 0) await agents.put(runKey(host), encodeMessage({ kind: "agent-running", site: SITE, host, version: "0.1.0", sha256: null, state: i % 2 ? "running" : "refused", reason: i % 2 ? undefined : "not signed", at: now }));
  }
  // Junk: a report that does not decode, one naming another host, a corrective record naming another host,
  // an agent report under another host's key, another host's envelope in a desired key, a value that is no envelope.
  await applied.put("hv5", encodeMessage({ kind: "report", nonsense: true }));
  await applied.put("hv8", encodeMessage({ kind: "report", site: SITE, host: "hv9", revision: 1, hash: null, rolledBack: false, at: now, summary: { ok: 0, changed: 0, failed: 0, pending: 0 }, results: [] }));
  await corrective.put("hv10", encodeMessage({ kind: "corrective-log", site: SITE, host: "hv11", count: 1, recent: [], at: now }));
  await agents.put(runKey("hv12"), encodeMessage({ kind: "agent-running", site: SITE, host: "hv13", version: "9.9.9", sha256: null, state: "running", at: now }));
  const other = await desired.get("hv14");
  if (other) await desired.put("hv15", other.value);
  await desired.put("hv16", new TextEncoder().encode("not json"));
}, 120_000);

afterAll(async () => {
  await site?.close();
});

describe("netfleet status over many hosts (bucket snapshots)", () => {
  it("gives the same rows as the per-host reads, junk included", async () => {
    const all = await site!.cp.status();
    expect(all.map((r) => r.host)).toEqual([...names].sort());
    // Per host: --limit selects fewer than BULK_STATUS_HOSTS at a time.
    const each: HostStatus[] = [];
    for (let i = 0; i < names.length; i += 10) each.push(...(await site!.cp.status({ limit: names.slice(i, i + 10) })));
    each.sort((a, b) => a.host.localeCompare(b.host));
    expect(all).toEqual(each);
    // And what the rows say, for a few: junk shows as nothing, never as another host's.
    const row = (h: string) => all.find((r) => r.host === h)!;
    expect(row("hv1")).toMatchObject({ enrolled: false, state: "unenrolled", desired: null });
    expect(row("hv4")).toMatchObject({ state: "approved", applied: { revision: 1 }, drift: false, failures: [] });
    expect(row("hv4").warnings).toEqual([{ id: "sysctl[net.t.k]", message: "foreign-drop: 2 rules" }]);
    expect(row("hv5").applied).toBeNull();
    expect(row("hv7")).toMatchObject({ failures: [{ id: "sysctl[net.t.k]", comment: "denied" }] });
    expect(row("hv8").applied).toBeNull();
    expect(row("hv9").corrective.count).toBe(8);
    expect(row("hv10").corrective.error).toMatch(/names lab\/hv11/);
    expect(row("hv12").agent).toBeNull();
    expect(row("hv15").desired).toBeNull();
    expect(row("hv16").desired).toBeNull();
    expect(row("hv29")).toMatchObject({ agent: { version: "0.1.0", state: "refused", reason: "not signed" } });
  }, 60_000);

  it("asks the agents for counters by default only when the selection is small, and says when it did not", async () => {
    // 37 approved hosts, none with an agent: a bound of 10 makes this site "large".
    const run = async (options: Parameters<typeof statusCommand>[2]) => {
      const out = memoryOutput(true);
      await statusCommand(site!.cp, out, { countersAutoMaxHosts: 10, ...options });
      return out.values[0] as { hosts: HostStatus[]; counters: { asked: boolean; hosts: number; reason?: string } };
    };
    expect((await run({})).counters).toEqual({ asked: false, hosts: N - 3, reason: "more than 10 approved hosts: --counters asks them all, --limit selects fewer" });
    expect((await run({ limit: ["hv4", "hv5", "hv6"] })).counters).toEqual({ asked: true, hosts: 3 });
    expect((await run({ counters: true })).counters).toEqual({ asked: true, hosts: N - 3 });
    expect((await run({ counters: false, limit: ["hv4"] })).counters).toEqual({ asked: false, hosts: 1, reason: "--no-counters" });
    // In text: one line says so, above the health line.
    const text = memoryOutput(false);
    await statusCommand(site!.cp, text, { countersAutoMaxHosts: 10 });
    expect(text.stdout.at(-2)).toBe(`counters: not asked of ${N - 3} approved hosts (more than 10 approved hosts: --counters asks them all, --limit selects fewer)`);
  }, 60_000);
});

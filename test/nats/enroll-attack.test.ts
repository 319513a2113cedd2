/**
 * Enrollment under attack (issue 15 point 1), against a real nats-server and
 * a serving ControlPlane: an attacker holding one host's agent.json (so the
 * site join token and its id, the enrollment NATS password) floods the
 * enroll subject and tries to claim inventory hosts. Looked for at the
 * targets: the registry (records and claims), the NATS user list, the
 * credential store, the buckets' stream state; with the positive controls
 * (a desired-state publish applied by a real agent, a legitimate host-token
 * enrollment approved) in the same site.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ENROLL_FACTS_MAX_BYTES, encodeMessage, enrollSubject, generateBoxKeys, kvStream, type BoxKeys } from "@netfleet/shared";
import { Kvm } from "@nats-io/kv";
import { CLAIMS_MAX, applyLimits, bucketLimits } from "../../packages/controller/src/store/buckets.ts";
import { SITE, TOKEN, assignmentFor, enrollRaw, eventually, inventoryHost, rawFacts, startAgent, startSite, stopAll, type Site, type TestAgent } from "./harness.ts";

const MAC = { hv1: "52:54:00:10:00:01", hv2: "52:54:00:10:00:02", hv3: "52:54:00:10:00:03", hv4: "52:54:00:10:00:04" };
const hosts = (["hv1", "hv2", "hv3", "hv4"] as const).map((h) => inventoryHost(h, MAC[h]));

let site: Site | undefined;
const agents: TestAgent[] = [];
let attacker: NatsConnection | undefined;

/** Every enroll event serve logged, refusals counted through the suppressed summaries. */
function handled(s: Site): { refused: number; claims: number; bad: number; approved: number } {
  let refused = 0;
  let claims = 0;
  let bad = 0;
  let approved = 0;
  for (const e of s.events) {
    if (e.event === "enroll-refused") refused++;
    else if (e.event === "enroll-refused-suppressed") refused += e.count as number;
    else if (e.event === "enroll" && e.state === "quarantined") claims++;
    else if (e.event === "bad-message" && String(e.subject).includes(".enroll.")) bad++;
    else if (e.event === "approved") approved++;
  }
  return { refused, claims, bad, approved };
}

/** The approved record of a host without the field a legitimate heartbeat moves (lastSeen). */
async function trusted(s: Site, host: string): Promise<unknown> {
  const r = await s.cp.registry.get(host);
  if (!r) return undefined;
  const { lastSeen: _lastSeen, ...rest } = r;
  return rest;
}

beforeAll(async () => {
  site = await startSite({ basePort: 32100, hosts });
  const hv1 = startAgent(site, { hostname: "hv1", macs: [MAC.hv1] });
  agents.push(hv1);
  await hv1.started;
  const first = await site.cp.publish(assignmentFor("hv1", 1));
  await site.cp.waitForApplied("hv1", first.revision, 15_000);
  attacker = await connect({ servers: site.server.urls, user: `enroll-${SITE}`, pass: site.enrollPassword });
}, 60_000);

afterAll(async () => {
  await attacker?.close();
  await stopAll(site, agents);
});

describe("enrollment attacks (real nats-server)", () => {
  it("10,000 enrollments with the token id and 100 with the stolen site token: nothing claimed, no approved record changed, buckets within limits, desired state still published", async () => {
    const s = site!;
    const a = attacker!;
    const hv1Before = await trusted(s, "hv1");
    const usersBefore = (await s.cp.users()).map((u) => u.user).sort();
    const t0 = Date.now();
    const wrong = `${s.enrollPassword}.not-the-secret-not-the-secret`;
    const mallory: BoxKeys = generateBoxKeys();
    // Padding that keeps the facts under the size limit (a fact-stuffed claim), and some far over it.
    const pad = Array.from({ length: 30 }, (_, i) => ({ name: `tap${i}`, mac: null, state: "UP", kind: "tun" }));
    let sent = 0;
    for (let i = 0; i < 10_000; i++) {
      // Invented names, the not-yet-enrolled inventory host, the approved one; one in 50 oversized.
      const hostname = i % 10 === 0 ? "hv2" : i % 10 === 1 ? "hv1" : `bogus-${i}`;
      const facts = rawFacts({ hostname, token: wrong, publicKey: mallory.publicKey, macs: [MAC.hv2] });
      const body = i % 50 === 7 ? { ...facts, interfaces: Array.from({ length: 2000 }, (_, j) => ({ name: `x${j}`, mac: null, state: "UP", kind: "tun" })) } : { ...facts, interfaces: [...facts.interfaces, ...pad] };
      a.publish(enrollSubject(SITE, hostname), encodeMessage(body));
      sent++;
      if (i % 1000 === 0) await a.flush();
    }
    await a.flush();
    const floodMs = Date.now() - t0;
    // The site-wide bucket for messages without a valid host token refills (200), so the stolen-token claims are heard.
    await new Promise((r) => setTimeout(r, 2500));
    // 100 with the full site token (stolen agent.json): claims on the approved host, on the unenrolled one (by name and
    // by its management MAC) and on invented names.
    for (let i = 0; i < 100; i++) {
      const hostname = i % 4 === 0 ? "hv1" : i % 4 === 1 ? "hv2" : i % 4 === 2 ? "localhost" : `stolen-${i}`;
      const macs = hostname === "localhost" || hostname === "hv2" ? [MAC.hv2] : [];
      a.publish(enrollSubject(SITE, hostname), encodeMessage(rawFacts({ hostname, token: TOKEN, publicKey: mallory.publicKey, macs })));
      sent++;
    }
    await a.flush();
    await eventually(() => {
      const h = handled(s);
      return h.refused + h.claims + h.bad >= sent;
    }, `serve handles all ${sent} enrollments`, 30_000);
    const h = handled(s);
    const handledMs = Date.now() - t0;

    // Positive control: the control plane still publishes desired state, and the approved agent applies it.
    const next = await s.cp.publish(assignmentFor("hv1", 2));
    expect((await s.cp.waitForApplied("hv1", next.revision, 15_000)).revision).toBe(next.revision);

    // No host claimed: no record for hv2, no user or credential for anyone new; hv1's record is what it was.
    expect(await s.cp.registry.get("hv2")).toBeUndefined();
    expect((await s.cp.users()).map((u) => u.user).sort()).toEqual(usersBefore);
    expect(await trusted(s, "hv1")).toEqual(hv1Before);
    expect((await s.cp.registry.get("hv1"))?.approvedKey).not.toBe(mallory.publicKey);
    expect(h.approved).toBe(1); // hv1's own, before the attack
    // Every wrong-token message was refused with nothing written; the stolen token made claims only, and at most CLAIMS_MAX.
    const claims = await s.cp.registry.claimCount();
    expect(claims).toBeGreaterThan(0);
    expect(claims).toBeLessThanOrEqual(CLAIMS_MAX);
    for (const r of await s.cp.registry.list()) if (r.host !== "hv1") expect(r.state).toBe("quarantined");
    expect((await s.cp.registry.claim("hv2"))?.reason ?? "").toMatch(/operator/);
    // The cap itself: with the site at its most pending claims, a new name is refused, an existing one may be refreshed.
    const some = (await s.cp.registry.claim("hv2"))!;
    await expect(s.cp.registry.putClaim({ ...some, host: "one-too-many" }, claims)).rejects.toThrow(/pending claims already/);
    await s.cp.registry.putClaim(some, claims);
    expect(await s.cp.registry.claim("one-too-many")).toBeUndefined();
    expect(h.bad).toBeGreaterThanOrEqual(200); // the oversized ones, refused before parsing

    // The store stays within every bucket's limits, and small.
    const jsm = await jetstreamManager(s.cp.nc);
    const limits = bucketLimits(5);
    const sizes: Record<string, number> = {};
    for (const [name, l] of [["hosts", limits.hosts], ["claims", limits.claims], ["tokens", limits.tokens], ["desired", limits.desired]] as const) {
      const info = await jsm.streams.info(kvStream(`nf_${SITE}_${name}`));
      sizes[name] = info.state.bytes;
      expect(info.state.messages).toBeLessThanOrEqual(l.maxMsgs);
      if (l.maxBytes > 0) {
        expect(info.config.max_bytes).toBe(l.maxBytes);
        expect(info.state.bytes).toBeLessThanOrEqual(l.maxBytes);
      }
    }
    const account = await jsm.getAccountInfo();
    expect(account.storage).toBeLessThan(16 * 1024 * 1024);
    console.log(
      `enroll flood: ${sent} messages (flood published in ${floodMs} ms, all handled in ${handledMs} ms): ${h.refused} refused, ` +
        `${h.bad} bad, ${h.claims} claims written (${claims} kept); store ${account.storage} bytes; ${JSON.stringify(sizes)}`,
    );
  }, 60_000);

  it("host tokens: bound to the host name, single use, expiring, unforgeable; the legitimate one approves", async () => {
    const s = site!;
    // A token for hv4 presented as hv3 (by name, and by hv4's MAC under another name): refused, nothing written.
    const forHv4 = s.hostToken("hv4");
    const asHv3 = await enrollRaw(s, { hostname: "hv3", token: forHv4, macs: [MAC.hv4], timeoutMs: 1500 });
    expect(asHv3.credentials).toBeUndefined();
    const byMac = await enrollRaw(s, { hostname: "somebox", token: forHv4, macs: [MAC.hv4], timeoutMs: 1500 });
    expect(byMac.credentials).toBeUndefined();
    expect(s.events.some((e) => e.event === "enroll-refused" && e.reason === "host token is for hv4, not hv3")).toBe(true);
    expect(s.events.some((e) => e.event === "enroll-refused" && e.reason === "host token is for hv4, not somebox")).toBe(true);
    expect(await s.cp.registry.get("hv3")).toBeUndefined();
    expect(await s.cp.registry.get("hv4")).toBeUndefined();
    // A forged token: hv4's MAC and nonce with the host part changed to hv3.
    const forged = forHv4.replace(".hv4.", ".hv3.");
    expect((await enrollRaw(s, { hostname: "hv3", token: forged, timeoutMs: 1500 })).credentials).toBeUndefined();
    expect(s.events.some((e) => e.event === "enroll-refused" && String(e.reason).includes("bad MAC"))).toBe(true);
    // An expired one.
    const shortLived = s.hostToken("hv3", 1000);
    // Expiry is kept in whole seconds, rounded up: 1 s asked is gone within 2 s.
    await new Promise((r) => setTimeout(r, 2100));
    expect((await enrollRaw(s, { hostname: "hv3", token: shortLived, timeoutMs: 1500 })).credentials).toBeUndefined();
    expect(s.events.some((e) => e.event === "enroll-refused" && String(e.reason).includes("expired"))).toBe(true);
    expect(await s.cp.registry.get("hv3")).toBeUndefined();

    // Positive control: hv4's token, as hv4, approves it (after the flood of the first test, same site).
    const legit = await enrollRaw(s, { hostname: "hv4", token: forHv4, macs: [MAC.hv4], timeoutMs: 10_000 });
    expect(legit.credentials).toMatchObject({ site: SITE, host: "hv4", user: "agent-lab-hv4" });
    const approved = await s.cp.registry.get("hv4");
    expect(approved).toMatchObject({ state: "approved", matchedBy: "token", approvedKey: legit.keys.publicKey });

    // The same token again, by another key: refused, hv4's record and credentials unchanged.
    const second = await enrollRaw(s, { hostname: "hv4", token: forHv4, timeoutMs: 1500 });
    expect(second.credentials).toBeUndefined();
    expect(await s.cp.registry.get("hv4")).toMatchObject({ approvedKey: legit.keys.publicKey, approvedAt: approved!.approvedAt });
    // And a fresh token for the approved host does not hand it over either.
    expect((await enrollRaw(s, { hostname: "hv4", token: s.hostToken("hv4"), timeoutMs: 1500 })).credentials).toBeUndefined();
    expect((await s.cp.registry.get("hv4"))?.approvedKey).toBe(legit.keys.publicKey);
    // Single use at the store: the nonce is taken once, by one agent key; the same key may come again (an
    // enrollment that failed after the nonce was taken), no other key, and not for another host.
    const nonce = s.hostToken("hv3").split(".")[4]!;
    const [k1, k2] = [generateBoxKeys().publicKey, generateBoxKeys().publicKey];
    expect(await s.cp.registry.useToken(nonce, "hv3", k1)).toBe(true);
    expect(await s.cp.registry.useToken(nonce, "hv3", k2)).toBe(false);
    expect(await s.cp.registry.useToken(nonce, "hv2", k1)).toBe(false);
    expect(await s.cp.registry.useToken(nonce, "hv3", k1)).toBe(true);
  }, 60_000);

  it("refuses facts over the size limit with a decode error, and the agent trims its own to fit", async () => {
    const s = site!;
    const keys = generateBoxKeys();
    const big = { ...rawFacts({ hostname: "hv2", token: s.hostToken("hv2"), publicKey: keys.publicKey }), interfaces: Array.from({ length: 400 }, (_, j) => ({ name: `vnet${j}`, mac: "52:54:00:aa:00:01", state: "UP", kind: "tun" })) };
    expect(encodeMessage(big).length).toBeGreaterThan(ENROLL_FACTS_MAX_BYTES);
    const before = s.events.length;
    attacker!.publish(enrollSubject(SITE, "hv2"), encodeMessage(big));
    await attacker!.flush();
    await eventually(() => s.events.slice(before).some((e) => e.event === "bad-message" && String(e.error).includes(`over the limit of ${ENROLL_FACTS_MAX_BYTES}`)), "oversized facts refused");
    expect(await s.cp.registry.get("hv2")).toBeUndefined();
    const { fitFacts } = await import("@netfleet/agent");
    const fitted = fitFacts({ ...big, interfaces: [{ name: "eth0", mac: MAC.hv3, state: "UP", kind: null }, ...big.interfaces] }, ENROLL_FACTS_MAX_BYTES);
    expect(encodeMessage(fitted).length).toBeLessThanOrEqual(ENROLL_FACTS_MAX_BYTES);
    expect(fitted.interfaces[0]).toMatchObject({ name: "eth0", mac: MAC.hv3 });
  });

  it("bringing an old, flooded bucket to its limits drops nothing: a limit below what it holds is left unset and reported", async () => {
    const s = site!;
    const kvm = new Kvm(s.cp.nc);
    const old = await kvm.create("enroll_old_hosts", { history: 5 });
    for (let i = 0; i < 60; i++) await old.put(`junk-${i}`, new TextEncoder().encode("x".repeat(100)));
    await old.put("approved", new TextEncoder().encode("the oldest record matters"));
    const limits = { history: 1, maxValueBytes: 1024, maxMsgs: 20, maxBytes: 4096, maxAgeMs: 0 };
    const warnings = await applyLimits(s.cp.nc, "enroll_old_hosts", limits);
    expect(warnings.join("\n")).toMatch(/holds 61 messages, over its limit of 20: limit not set/);
    expect(warnings.join("\n")).toMatch(/bytes, over its limit of 4096: limit not set/);
    const jsm = await jetstreamManager(s.cp.nc);
    const info = await jsm.streams.info(kvStream("enroll_old_hosts"));
    expect(info.state.messages).toBe(61);
    expect(info.config.max_msg_size).toBe(1024);
    expect(new TextDecoder().decode((await old.get("approved"))!.value)).toBe("the oldest record matters");
    // Control: a bucket within the limits gets them all.
    const small = await kvm.create("enroll_small_hosts", { history: 5 });
    await small.put("a", new TextEncoder().encode("1"));
    expect(await applyLimits(s.cp.nc, "enroll_small_hosts", limits)).toEqual([]);
    const si = await jsm.streams.info(kvStream("enroll_small_hosts"));
    expect([si.config.max_msgs, si.config.max_bytes, si.config.max_msgs_per_subject]).toEqual([20, 4096, 1]);
    await jsm.streams.delete(kvStream("enroll_old_hosts"));
    await jsm.streams.delete(kvStream("enroll_small_hosts"));
  });

  it("a flood on a host's name with the token id does not starve that host's valid host token", async () => {
    const s = site!;
    const a = attacker!;
    const junk = generateBoxKeys();
    const wrong = `${s.enrollPassword}.not-the-secret-not-the-secret`;
    let flooding = true;
    let sent = 0;
    // Bounded whatever happens: stops when told, at 600 rounds (30,000 messages) or 20 s, whichever comes first.
    const floodDeadline = Date.now() + 20_000;
    const flood = (async () => {
      for (let round = 0; flooding && round < 600 && Date.now() < floodDeadline; round++) {
        for (let i = 0; i < 50; i++) a.publish(enrollSubject(SITE, "hv3"), encodeMessage(rawFacts({ hostname: "hv3", token: wrong, publicKey: junk.publicKey })));
        sent += 50;
        await a.flush();
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    let legit: Awaited<ReturnType<typeof enrollRaw>>;
    try {
      await new Promise((r) => setTimeout(r, 500));
      legit = await enrollRaw(s, { hostname: "hv3", token: s.hostToken("hv3"), timeoutMs: 8000 });
    } finally {
      flooding = false;
      await flood;
    }
    expect(sent).toBeGreaterThan(500);
    expect(legit.credentials).toMatchObject({ host: "hv3" });
    expect(await s.cp.registry.get("hv3")).toMatchObject({ state: "approved", approvedKey: legit.keys.publicKey });
    expect(s.events.some((e) => e.event === "enroll-refused" && e.host === "hv3" && String(e.reason).startsWith("rate limit"))).toBe(true);
  }, 30_000);
});

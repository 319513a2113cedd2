import { mkdirSync } from "node:fs";
import { open, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import { Toolbox, readKey, networkLeasesPath } from "@netfleet/agent";
import {
  AgentCredentials,
  LeaseTable,
  decodeMessage,
  decodeNetworkLeases,
  appliedBucket,
  desiredBucket,
  directGetSubject,
  encodeMessage,
  kvSubject,
  leasesBucket,
  sealAssignment,
  type HostAssignment,
  type NetworkLeases,
} from "@netfleet/shared";
import { SITE, eventually, inventoryHost, startSimAgent, startSite, type SimAgent, type Site } from "./harness.ts";

const LEASES = leasesBucket(SITE);
const NET = "service";
const NOW_S = Math.floor(Date.now() / 1000);

/** The backend: one dnsmasq (the simulated host cannot start it; only its lease file matters here). */
function backendAssignment(): HostAssignment {
  return sealAssignment({
    apiVersion: "netfleet.dev/v1",
    kind: "HostAssignment",
    site: SITE,
    host: "backend",
    role: "backend",
    resources: [
      {
        kind: "dnsmasq",
        name: NET,
        interface: "gw-service",
        address: "10.10.0.1",
        netmask: "255.255.255.0",
        domain: "service.lab",
        dhcp: { start: "10.10.0.100", end: "10.10.0.200", leaseTime: "1h" },
        router: true,
        mtu: 1500,
        maxTtl: 600,
        hosts: [],
        dns: "open",
        upstream: [],
        allowNames: [],
      },
    ],
  });
}

/** A VM host whose port rules take their leases from the backend. */
function vmHostAssignment(host: string): HostAssignment {
  return sealAssignment({
    apiVersion: "netfleet.dev/v1",
    kind: "HostAssignment",
    site: SITE,
    host,
    role: "vmhost",
    resources: [
      {
        kind: "vm-port-policy",
        name: "br-service",
        network: NET,
        uplinkPort: "pb-service",
        gateway: { ip: "10.10.0.1", mac: "52:54:00:00:00:01" },
        isolatedDefault: false,
        cookie: "0x00000000000000aa",
        leaseSource: "backend",
        vms: [],
      },
    ],
  });
}

function mac(i: number): string {
  return `52:54:00:12:00:${i.toString(16).padStart(2, "0")}`;
}

/** dnsmasq's lease file format: `<expiry> <mac> <ip> <hostname> <client-id>`. */
function leaseFile(count: number, expiresBase = NOW_S + 3600): string {
  return Array.from({ length: count }, (_, i) => `${expiresBase + i} ${mac(i + 1)} 10.10.0.${100 + i} vm${i + 1} 01:${mac(i + 1)}\n`).join("");
}

function runDir(site: Site, host: string): string {
  return join(site.dir, "run", host);
}

/** Where the backend's dnsmasq keeps its leases: the agent's state dir (`<runDir>/state` here), which survives a reboot. */
function backendLeaseFile(site: Site): string {
  const dir = join(runDir(site, "backend"), "state", "dnsmasq");
  mkdirSync(dir, { recursive: true }); // dnsmasq's dir, as the agent makes it before it starts dnsmasq
  return join(dir, `${NET}.leases`);
}

async function readLeases(site: Site, host: string): Promise<NetworkLeases | undefined> {
  const path = networkLeasesPath(runDir(site, host), NET);
  try {
    return decodeNetworkLeases(path, await readFile(path, "utf8"));
  } catch {
    return undefined;
  }
}

function simAgent(site: Site, hostname: string): SimAgent {
  return startSimAgent(site, { hostname, tools: new Toolbox({ runDir: runDir(site, hostname) }) });
}

async function assign(site: Site, agent: SimAgent, assignment: HostAssignment): Promise<void> {
  await agent.started;
  await site.cp.publish(assignment);
  await eventually(() => agent.agent.assignment?.hash === assignment.hash, `${assignment.host} runs its assignment`);
}

/** The stored value of the backend's key, read with the controller's connection. */
async function storedBackendKey(site: Site): Promise<{ seq: number; text: string } | undefined> {
  const got = await readKey(site.cp.nc, LEASES, "backend");
  return got && { seq: got.seq, text: new TextDecoder().decode(got.data) };
}

/** A put with the controller's credentials (it may write anything): resolves with the stream's sequence. */
async function controllerPut(site: Site, key: string, data: Uint8Array | string): Promise<number> {
  const ack = await site.cp.nc.request(kvSubject(LEASES, key), data, { timeout: 2000 });
  const body = JSON.parse(ack.string()) as { seq?: number; error?: unknown };
  if (typeof body.seq !== "number") throw new Error(`put refused: ${ack.string()}`);
  return body.seq;
}

function count(agent: SimAgent, event: string, match: (e: Record<string, unknown>) => boolean = () => true): number {
  return agent.events.filter((e) => e.event === event && match(e)).length;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

describe("DHCP leases from the backend to the VM hosts", () => {
  let site: Site | undefined;
  const agents: SimAgent[] = [];
  const raw: NatsConnection[] = [];

  afterEach(async () => {
    for (const nc of raw.splice(0)) await nc.close().catch(() => {});
    for (const a of agents.splice(0)) await a.agent.stop();
    await site?.close();
    site = undefined;
  });

  it("a change in the backend's dnsmasq lease file reaches the VM host's leases file, and a ports pass follows", async () => {
    site = await startSite({ basePort: 31050, hosts: [inventoryHost("backend"), inventoryHost("hv1")] });
    const backend = simAgent(site, "backend");
    const hv1 = simAgent(site, "hv1");
    agents.push(backend, hv1);
    await assign(site, backend, backendAssignment());
    await assign(site, hv1, vmHostAssignment("hv1"));

    // No lease file yet: no leases for the network (published once at start).
    await eventually(async () => (await readLeases(site!, "hv1"))?.leases.length === 0, "hv1 has an empty lease list from the backend");
    const path = networkLeasesPath(runDir(site, "hv1"), NET);
    expect((await stat(path)).mode & 0o777).toBe(0o644);
    expect(await readLeases(site, "hv1")).toMatchObject({ network: NET, host: "backend", leases: [] });

    // Each round: dnsmasq hands out one more lease (its file rewritten in place); time until hv1's file has it.
    const delays: number[] = [];
    for (let n = 1; n <= 8; n++) {
      const passesBefore = count(hv1, "leases-changed");
      // At a random point of the backend's poll cycle (writing right after the last change would lock the phase).
      await new Promise((r) => setTimeout(r, Math.random() * 500));
      const started = Date.now();
      await writeFile(backendLeaseFile(site), leaseFile(n));
      await eventually(async () => (await readLeases(site!, "hv1"))?.leases.length === n, `hv1 sees ${n} leases`);
      // From the write of dnsmasq's file to the rename of hv1's (its mtime): same clock, no polling error of the test.
      delays.push((await stat(path)).mtimeMs - started);
      await eventually(() => count(hv1, "leases-changed") > passesBefore, "hv1 asked its daemon for a ports pass");
    }
    const sorted = [...delays].sort((a, b) => a - b);
    console.log(JSON.stringify({ measure: "lease file change -> VM host leases file", rounds: delays.length, pollMs: 500, settleMs: 100, p50Ms: Math.round(percentile(sorted, 50)), maxMs: Math.round(sorted.at(-1)!), allMs: delays.map(Math.round) }));
    expect(sorted.at(-1)).toBeLessThan(3000);

    const doc = (await readLeases(site, "hv1"))!;
    expect(doc.leases[0]).toEqual({ mac: mac(1), ip: "10.10.0.100", expires: NOW_S + 3600 });
    // The daemon did run a ports pass after the last change (it fails on the simulated host: there is no OVS).
    await eventually(() => hv1.events.some((e) => e.event === "reconcile" && e.pass === "ports"), "a ports pass ran");

    // A renewal (only the expiry moves) is a change too.
    await writeFile(backendLeaseFile(site), leaseFile(8, NOW_S + 7200));
    await eventually(async () => (await readLeases(site!, "hv1"))?.leases[0]?.expires === NOW_S + 7200, "hv1 sees the renewal");

    // A file that does not parse: logged, nothing published, hv1's file unchanged.
    const before = await storedBackendKey(site);
    const fileBefore = await readFile(path, "utf8");
    await writeFile(backendLeaseFile(site), `${leaseFile(3)}this is not a lease\n`);
    await eventually(() => count(backend, "leases-unparsable") > 0, "the backend logs the unparsable file");
    await new Promise((r) => setTimeout(r, 1200));
    expect((await storedBackendKey(site))?.seq).toBe(before?.seq);
    expect(await readFile(path, "utf8")).toBe(fileBefore);
    expect(count(backend, "leases-unparsable")).toBe(1); // logged once, not every poll

    // Fixed: published again. The file gone: no leases.
    await writeFile(backendLeaseFile(site), leaseFile(3));
    await eventually(async () => (await readLeases(site!, "hv1"))?.leases.length === 3, "hv1 sees 3 leases");
    await writeFile(backendLeaseFile(site), "");
    await eventually(async () => (await readLeases(site!, "hv1"))?.leases.length === 0, "hv1 sees no leases");
  });

  it("a lease file rewritten in place (truncate, then write) is never published cut short", async () => {
    site = await startSite({ basePort: 31060, hosts: [inventoryHost("backend"), inventoryHost("hv1")] });
    const backend = simAgent(site, "backend");
    const hv1 = simAgent(site, "hv1");
    agents.push(backend, hv1);
    await assign(site, backend, backendAssignment());
    await assign(site, hv1, vmHostAssignment("hv1"));
    await writeFile(backendLeaseFile(site), leaseFile(20));
    await eventually(async () => (await readLeases(site!, "hv1"))?.leases.length === 20, "hv1 sees 20 leases");

    // What dnsmasq does (lease.c: rewind, ftruncate, write, fflush), here with pauses inside (each shorter than
    // the publisher's 100 ms settle time) so that polls land mid-write: empty, then half written, then whole.
    const seen = new Set<number>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const doc = await readLeases(site!, "hv1");
        if (doc) seen.add(doc.leases.length);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const rewrites = 20;
    for (let round = 1; round <= rewrites; round++) {
      const text = leaseFile(20, NOW_S + 3600 + round * 10);
      const half = text.length >> 1;
      const fh = await open(backendLeaseFile(site), "w");
      await new Promise((r) => setTimeout(r, 80));
      await fh.write(text.slice(0, half));
      await new Promise((r) => setTimeout(r, 80));
      await fh.write(text.slice(half));
      await fh.close();
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 400));
    }
    await eventually(async () => (await readLeases(site!, "hv1"))?.leases[0]?.expires === NOW_S + 3600 + rewrites * 10, "hv1 sees the last rewrite");
    watching = false;
    await watcher;
    const published = backend.events.filter((e) => e.event === "leases-published").map((e) => (e.leases as Record<string, number>)[NET]);
    const stats = backend.agent.leasePublisher.stats;
    console.log(JSON.stringify({ measure: "in-place rewrites", rewrites, ...stats, leaseCountsSeenOnVmHost: [...seen] }));
    expect(published.every((n) => n === 20 || n === 0)).toBe(true);
    expect([...seen]).toEqual([20]);
    // The guard did its work: passes that caught a file mid-write (about one rewrite in three lands in a poll).
    expect(stats.unsettled).toBeGreaterThan(0);
  });

  it("attack: a VM host's credentials cannot write the backend's key (refused by the server, value unchanged); the backend's own write goes through", async () => {
    site = await startSite({ basePort: 31070, hosts: [inventoryHost("backend"), inventoryHost("hv1")] });
    const backend = simAgent(site, "backend");
    const hv1 = simAgent(site, "hv1");
    agents.push(backend, hv1);
    await assign(site, backend, backendAssignment());
    await assign(site, hv1, vmHostAssignment("hv1"));
    await writeFile(backendLeaseFile(site), leaseFile(2));
    await eventually(async () => (await readLeases(site!, "hv1"))?.leases.length === 2, "hv1 sees the backend's 2 leases");

    // The attacker holds hv1's credentials and connects on its own.
    const creds = decodeMessage(AgentCredentials, "creds", await readFile(join(site.dir, "agents", "hv1", "credentials.json"), "utf8"));
    const nc = await connect({ servers: site.server.urls, user: creds.user, pass: creds.password, inboxPrefix: creds.inboxPrefix });
    raw.push(nc);
    const errors: string[] = [];
    void (async () => {
      for await (const s of nc.status()) if (s.type === "error") errors.push(String((s as { error?: Error }).error?.message));
    })();

    const stored = await storedBackendKey(site);
    const fileBefore = await readFile(networkLeasesPath(runDir(site, "hv1"), NET), "utf8");
    const forged: LeaseTable = { host: "backend", at: Date.now() + 60_000, networks: { [NET]: [{ mac: "52:54:00:66:66:66", ip: "10.10.0.100", expires: 0 }] } };
    // 1. a put (request, as a KV client does it) and a plain publish to the backend's key: both refused by the server.
    await expect(nc.request(kvSubject(LEASES, "backend"), encodeMessage(forged), { timeout: 2000 })).rejects.toThrow(/Permissions Violation for Publish/);
    nc.publish(kvSubject(LEASES, "backend"), encodeMessage(forged));
    await nc.flush();
    await eventually(() => errors.some((e) => e.includes(`Permissions Violation for Publish to "${kvSubject(LEASES, "backend")}"`)), "the publish is refused");
    // 2. a rollup through its own key (would delete every other key of the bucket): the stream refuses rollups.
    const rollup = headers();
    rollup.set("Nats-Rollup", "all");
    const ack = await nc.request(kvSubject(LEASES, "hv1"), encodeMessage(forged), { headers: rollup, timeout: 2000 });
    expect(ack.string()).toMatch(/rollup not permitted/);
    // ... and so does the applied bucket, where every agent writes its own report key.
    const appliedAck = await nc.request(kvSubject(appliedBucket(SITE), "hv1"), encodeMessage(forged), { headers: rollup, timeout: 2000 });
    expect(appliedAck.string()).toMatch(/rollup not permitted/);
    // 3. the wildcard reads the leases bucket only: not another bucket, and not a multi-token subject.
    await expect(nc.request(directGetSubject(desiredBucket(SITE), "backend"), "", { timeout: 2000 })).rejects.toThrow(/Permissions Violation for Publish/);
    for (const subject of [kvSubject(desiredBucket(SITE), "*"), kvSubject("*", "backend"), "$KV.>"]) {
      const sub = nc.subscribe(subject);
      const closed = await Promise.race([sub.closed, new Promise((r) => setTimeout(() => r("still open"), 2000))]);
      expect(String((closed as Error | undefined)?.message ?? closed)).toMatch(/Permissions Violation for Subscription/);
    }

    // Nothing changed: the stored value (same sequence, same bytes) and hv1's file.
    await new Promise((r) => setTimeout(r, 300));
    expect(await storedBackendKey(site)).toEqual(stored);
    expect(await readFile(networkLeasesPath(runDir(site, "hv1"), NET), "utf8")).toBe(fileBefore);

    // Positive controls with the same credentials: its own key is writable, the backend's key readable.
    const own = await nc.request(kvSubject(LEASES, "hv1"), encodeMessage({ ...forged, host: "hv1" }), { timeout: 2000 });
    expect(JSON.parse(own.string())).toMatchObject({ seq: expect.any(Number) });
    const read = await readKey(nc, LEASES, "backend");
    expect(decodeMessage(LeaseTable, "backend key", read!.data)).toMatchObject({ host: "backend", networks: { [NET]: [{ ip: "10.10.0.100" }, { ip: "10.10.0.101" }] } });
    // ... and in the same test the backend's own write goes through.
    await writeFile(backendLeaseFile(site), leaseFile(4));
    await eventually(async () => ((await storedBackendKey(site!))?.seq ?? 0) > stored!.seq, "the backend's put is stored");
    await eventually(async () => (await readLeases(site!, "hv1"))?.leases.length === 4, "hv1 sees the backend's 4 leases");
    expect((await readLeases(site, "hv1"))?.leases.some((l) => l.mac === "52:54:00:66:66:66")).toBe(false);
  });

  it("a forged or garbage value on the backend's key changes nothing on the VM host; a valid newer one does", async () => {
    site = await startSite({ basePort: 31080, hosts: [inventoryHost("hv1")] });
    const hv1 = simAgent(site, "hv1");
    agents.push(hv1);
    await assign(site, hv1, vmHostAssignment("hv1"));
    const path = networkLeasesPath(runDir(site, "hv1"), NET);

    const t1: LeaseTable = { host: "backend", at: Date.now(), networks: { [NET]: [{ mac: mac(1), ip: "10.10.0.100", expires: NOW_S + 600 }] } };
    await controllerPut(site, "backend", encodeMessage(t1));
    await eventually(async () => (await readLeases(site!, "hv1"))?.leases.length === 1, "hv1 takes the first table");
    const bytes = await readFile(path, "utf8");
    const { mtimeMs, ino } = await stat(path);
    const changedBefore = count(hv1, "leases-changed");

    const other = { mac: "52:54:00:66:66:66", ip: "10.10.0.100", expires: 0 };
    const attacks: [string, Uint8Array | string][] = [
      ["decode", new Uint8Array([0x67, 0x61, 0x72, 0xff, 0xfe, 0x00])],
      ["decode", "{not json"],
      ["decode", JSON.stringify({ host: "backend", at: Date.now() + 1000 })],
      ["decode", JSON.stringify({ ...t1, at: Date.now() + 1000, networks: { [NET]: [{ ...other, mac: "ff:ff" }] } })],
      ["decode", JSON.stringify({ ...t1, at: Date.now() + 1000, extra: true })],
      ["host", JSON.stringify({ host: "hv9", at: Date.now() + 1000, networks: { [NET]: [other] } })],
      ["older", JSON.stringify({ host: "backend", at: t1.at - 1000, networks: { [NET]: [other] } })],
    ];
    for (const [reason, data] of attacks) {
      const rejected = count(hv1, "leases-rejected", (e) => e.reason === reason);
      await controllerPut(site, "backend", data);
      await eventually(() => count(hv1, "leases-rejected", (e) => e.reason === reason) > rejected, `hv1 rejects it (${reason})`);
    }
    // A delete marker (empty value): not a table either.
    const rejected = count(hv1, "leases-rejected");
    const del = headers();
    del.set("KV-Operation", "DEL");
    await site.cp.nc.request(kvSubject(LEASES, "backend"), new Uint8Array(0), { headers: del, timeout: 2000 });
    await eventually(() => count(hv1, "leases-rejected") > rejected, "hv1 rejects the delete marker");

    expect(await readFile(path, "utf8")).toBe(bytes);
    expect(await stat(path)).toMatchObject({ mtimeMs, ino });
    expect(count(hv1, "leases-changed")).toBe(changedBefore);
    console.log(JSON.stringify({ measure: "forged values", rejected: hv1.events.filter((e) => e.event === "leases-rejected").map((e) => e.reason) }));

    // A valid, newer table after them does change the file (and asks for a ports pass).
    const t2: LeaseTable = { host: "backend", at: Date.now(), networks: { [NET]: [{ mac: mac(2), ip: "10.10.0.101", expires: NOW_S + 600 }, { mac: mac(1), ip: "10.10.0.100", expires: NOW_S + 600 }] } };
    await controllerPut(site, "backend", encodeMessage(t2));
    await eventually(async () => (await readLeases(site!, "hv1"))?.leases.length === 2, "hv1 takes the valid table");
    expect(await readLeases(site, "hv1")).toEqual({ network: NET, host: "backend", at: t2.at, leases: [t2.networks[NET]![1], t2.networks[NET]![0]] });
    await eventually(() => count(hv1, "leases-changed") > changedBefore, "hv1 asked for a ports pass");
  });

  it("the files stay while the VM host's agent is away; restarted, it reads the key again and refuses garbage and older tables", async () => {
    site = await startSite({ basePort: 31090, hosts: [inventoryHost("hv1")] });
    let hv1 = simAgent(site, "hv1");
    agents.push(hv1);
    await assign(site, hv1, vmHostAssignment("hv1"));
    const path = networkLeasesPath(runDir(site, "hv1"), NET);
    const t1: LeaseTable = { host: "backend", at: Date.now(), networks: { [NET]: [{ mac: mac(1), ip: "10.10.0.100", expires: NOW_S + 600 }] } };
    await controllerPut(site, "backend", encodeMessage(t1));
    await eventually(async () => (await readLeases(site!, "hv1"))?.leases.length === 1, "hv1 takes the table");
    const bytes = await readFile(path, "utf8");

    await hv1.agent.stop();
    agents.splice(agents.indexOf(hv1), 1);
    expect(await readFile(path, "utf8")).toBe(bytes);

    // While it is away the key is overwritten with garbage: the restarted agent reads it on connecting and refuses it.
    await controllerPut(site, "backend", "garbage while away");
    hv1 = simAgent(site, "hv1");
    agents.push(hv1);
    await hv1.started;
    await eventually(() => count(hv1, "leases-rejected", (e) => e.reason === "decode") > 0, "the restarted agent refuses the stored garbage");
    // An older table than the one on disk (the floor survives the restart, from the file).
    await controllerPut(site, "backend", encodeMessage({ ...t1, at: t1.at - 1, networks: { [NET]: [] } }));
    await eventually(() => count(hv1, "leases-rejected", (e) => e.reason === "older") > 0, "the restarted agent refuses an older table");
    await hv1.agent.leaseFollower.idle();
    expect(await readFile(path, "utf8")).toBe(bytes);
    // The same table again is no change: the file is not rewritten.
    const { mtimeMs } = await stat(path);
    await controllerPut(site, "backend", encodeMessage(t1));
    await new Promise((r) => setTimeout(r, 500));
    await hv1.agent.leaseFollower.idle();
    expect((await stat(path)).mtimeMs).toBe(mtimeMs);
    expect(count(hv1, "leases-written")).toBe(0);
  });
});

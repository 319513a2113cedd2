import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { networkLeasesPath } from "@netfleet/agent";
import { publishStoredWord, type ControlPlane } from "@netfleet/controller";
import {
  AgentCredentials,
  appliedBucket,
  correctiveBucket,
  decodeMessage,
  desiredBucket,
  encodeMessage,
  kvSubject,
  leasesBucket,
  sealAssignment,
  type HostAssignment,
  type LeaseTable,
} from "@netfleet/shared";
import { requestAgent } from "../../packages/controller/src/nats/agent-request.ts";
import { HOSTS, SITE, alive, controllerOf, eventsOf, startAgentInProcess, startAgentProcess, startServe, stopChild, until, type FleetAgent, type Serve } from "./fuzz-fleet.ts";
import { countBy, sampleHostile } from "./fuzz-messages.ts";
import { buildShots, type Creds, type Shot } from "./fuzz-shots.ts";
import { oversizedPublish } from "./fuzz-wire.ts";

/** Fixed seed (NETFLEET_FUZZ_SEED overrides); printed with every failure. */
const SEED = Number(process.env.NETFLEET_FUZZ_SEED ?? 13_2026);
const PORT = 31950;

/** hv1's assignment, generation `gen`: sysctls, and port rules that take their leases from gw1 (so hv1 follows gw1's lease key). */
function hv1Assignment(gen: number): HostAssignment {
  return sealAssignment({
    apiVersion: "netfleet.dev/v1",
    kind: "HostAssignment",
    site: SITE,
    host: "hv1",
    role: "vmhost",
    resources: [
      { kind: "sysctl", name: "net.sim.generation", value: String(gen) },
      {
        kind: "vm-port-policy",
        name: "br-service",
        network: "service",
        uplinkPort: "pb-service",
        gateway: { ip: "10.82.0.1", mac: "52:54:00:00:00:01" },
        isolatedDefault: false,
        cookie: "0x00000000000000aa",
        leaseSource: "gw1",
        vms: [],
      },
    ],
  });
}

function sysctlAssignment(host: string, gen: number): HostAssignment {
  return sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: SITE, host, role: "vmhost", resources: [{ kind: "sysctl", name: `net.sim.${host}`, value: String(gen) }] });
}

/** A connection that records the server's errors (permission violations). */
interface Attacker {
  nc: NatsConnection;
  errors: string[];
}

async function attacker(url: string, user: string, pass: string, inboxPrefix?: string): Promise<Attacker> {
  const nc = await connect({ servers: [url], user, pass, ...(inboxPrefix ? { inboxPrefix } : {}), maxReconnectAttempts: 0 });
  const errors: string[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === "error") errors.push(String((s as { error?: Error }).error?.message));
  })();
  return { nc, errors };
}

async function agentCredentials(a: FleetAgent): Promise<AgentCredentials> {
  return decodeMessage(AgentCredentials, "credentials", await readFile(join(a.stateDir, "credentials.json"), "utf8"));
}

const readOr = (path: string) => readFile(path, "utf8").catch(() => "(absent)");

describe(`NATS fuzz: hostile messages against netfleet serve and its agents (seed ${SEED})`, () => {
  let dir: string;
  let serve: Serve | undefined;
  let cp: ControlPlane | undefined;
  const agents: Record<string, FleetAgent> = {};
  const conns: Partial<Record<Creds, Attacker>> = {};
  const leases: LeaseTable = { host: "gw1", at: Date.now(), networks: { service: [{ mac: "52:54:00:82:00:01", ip: "10.82.0.101", expires: Math.floor(Date.now() / 1000) + 3600 }] } };
  const started = Date.now();

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "nf-fuzz-"));
    serve = await startServe(dir, PORT);
    cp = await controllerOf(serve);
    // What a rollout does: the applied bucket watched, so a report is heard at once.
    await cp.watchApplied();
    // hv1 (the target) and hv2 (whose credentials the attacker holds) run as processes; gw1 (whose credentials the attacker
    // holds too) and hv3 (waiting for approval) as clients in this process.
    for (const host of ["hv1", "hv2"]) agents[host] = startAgentProcess(dir, serve, host);
    agents.gw1 = startAgentInProcess(dir, serve, "gw1");
    // hv3 enrolls with the site's join token (no host token): a pending claim, it waits for a welcome.
    agents.hv3 = startAgentInProcess(dir, serve, "hv3", serve.secrets.enrollment.token);
    for (const host of ["gw1", "hv1", "hv2"]) await until(() => eventsOf(agents[host]!, "connected").length > 0, () => `${host} connected: ${JSON.stringify(agents[host]!.events.slice(-5))}`, 90_000);
    await until(async () => (await cp!.registry.claim("hv3"))?.state === "quarantined", "hv3 quarantined");

    await cp.publish(hv1Assignment(1));
    await cp.publish(hv1Assignment(2));
    await cp.publish(sysctlAssignment("hv2", 1));
    await cp.waitForApplied("hv1", 2, 20_000);
    await cp.waitForApplied("hv2", 1, 20_000);
    const gw1 = await agentCredentials(agents.gw1!);
    const hv2 = await agentCredentials(agents.hv2!);
    conns.gw1 = await attacker(serve.url, gw1.user, gw1.password, gw1.inboxPrefix);
    conns.hv2 = await attacker(serve.url, hv2.user, hv2.password, hv2.inboxPrefix);
    conns.enroll = await attacker(serve.url, `enroll-${SITE}`, serve.secrets.enrollment.enrollPassword);
    conns.controller = await attacker(serve.url, serve.secrets.controller.user, serve.secrets.controller.password);
    // The backend's lease table (what its lease publisher writes): hv1 writes it to its lease file.
    await kvPut(conns.gw1, leasesBucket(SITE), "gw1", encodeMessage(leases));
    await until(() => eventsOf(agents.hv1!, "leases-written").length > 0, "hv1 wrote gw1's leases");
  }, 180_000);

  afterAll(async () => {
    for (const c of Object.values(conns)) await c.nc.close().catch(() => {});
    await cp?.close().catch(() => {});
    for (const a of Object.values(agents)) await a.stop();
    await stopChild(serve?.proc);
    // serve stops its nats-server on SIGTERM; one left behind by a serve that had to be killed is stopped by its pid.
    if (serve && alive(serve.natsPid)) process.kill(serve.natsPid, "SIGKILL");
    if (dir) await rm(dir, { recursive: true, force: true });
    console.log(`fuzz suite: ${((Date.now() - started) / 1000).toFixed(1)} s (seed ${SEED})`);
  });

  async function kvPut(a: Attacker, bucket: string, key: string, data: Uint8Array): Promise<{ seq?: number; error?: string }> {
    const ack = await a.nc.request(kvSubject(bucket, key), data, { timeout: 10_000 });
    const body = JSON.parse(ack.string()) as { seq?: number; error?: { description?: string } };
    return body.seq !== undefined ? { seq: body.seq } : { error: body.error?.description ?? "no acknowledgement" };
  }

  /**
   * A write to `key` of the desired bucket as the controller makes one: stored, then the controller's word with the
   * bytes (publishStoredWord; revision 0, unused: the agent takes the bytes' own), which is what the agent follows.
   */
  async function desiredPut(a: Attacker, key: string, data: Uint8Array): Promise<{ seq?: number; error?: string }> {
    const put = await kvPut(a, desiredBucket(SITE), key, data);
    if (put.seq !== undefined) publishStoredWord(a.nc, SITE, key, data, put.seq, 0);
    return put;
  }

  /** What must not change: raw KV values of keys no attacker credential may write, files of the agents and serve. */
  async function snapshot(): Promise<Record<string, unknown>> {
    const kvm = new Kvm(cp!.nc);
    const raw = async (bucket: string, key: string) => {
      const e = await (await kvm.open(bucket)).get(key);
      return e ? `${e.revision}:${e.operation}:${e.string()}` : "(none)";
    };
    const out: Record<string, unknown> = {};
    for (const host of ["gw1", "hv2", "hv3"]) out[`desired/${host}`] = await raw(desiredBucket(SITE), host);
    for (const host of ["gw1", "hv1", "hv3"]) out[`applied/${host}`] = await raw(appliedBucket(SITE), host);
    for (const host of ["gw1", "hv1", "hv3"]) out[`corrective/${host}`] = await raw(correctiveBucket(SITE), host);
    // Registry: who is trusted (state, approved key); lastSeen and the facts' sentAt move with every legitimate heartbeat and enrollment.
    out.registry = (await cp!.registry.list()).map((r) => ({ host: r.host, inventory: r.inventory, state: r.state, matchedBy: r.matchedBy, approvedKey: r.approvedKey, approvedAt: r.approvedAt, facts: { ...r.facts, sentAt: "-" } }));
    out.users = await readOr(join(serve!.stateDir, "nats", "accounts.conf"));
    const credentials = join(serve!.stateDir, "credentials");
    for (const f of (await readdir(credentials)).sort()) out[`credentials/${f}`] = await readOr(join(credentials, f));
    for (const [host, a] of Object.entries(agents)) {
      out[`${host}/checkpoint`] = await readOr(join(a.stateDir, "checkpoint.json"));
      out[`${host}/credentials`] = await readOr(join(a.stateDir, "credentials.json"));
      out[`${host}/host`] = await readOr(a.hostFile);
      out[`${host}/applying`] = eventsOf(a, "applying").map((e) => e.revision);
    }
    out["hv1/leases"] = await readOr(networkLeasesPath(join(dir, "run", "hv1"), "service"));
    return out;
  }

  it("fleet mode: hv1 refuses hv2's valid signed assignment replayed into hv1's own key, and an older one of its own; the revert path and the next assignment still apply", async () => {
    const hv1 = agents.hv1!;
    const applying = () => eventsOf(hv1, "applying").map((e) => e.revision);
    const appliedBefore = applying();
    const running = (await cp!.desired.read("hv1"))!.envelope;
    // Someone holding the controller's credentials copies hv2's stored envelope (signed by the controller, for hv2) into hv1's key.
    const hv2 = (await cp!.desired.read("hv2"))!.envelope;
    const replay = await desiredPut(conns.controller!, "hv1", encodeMessage(hv2));
    const refused = await hv1.log.waitFor((e) => e.event === "assignment-rejected" && e.seq === replay.seq, "hv1 refuses hv2's assignment");
    expect(refused).toMatchObject({ reason: "wrong-host", keeping: running.revision, error: `revision ${hv2.revision}: assignment is for lab/hv2, not lab/hv1` });
    // ... and hv1's own older envelope, replayed.
    const older = (await cp!.desired.atRevision("hv1", running.revision - 1))!;
    const rollback = await desiredPut(conns.controller!, "hv1", encodeMessage(older));
    expect(await hv1.log.waitFor((e) => e.event === "assignment-rejected" && e.seq === rollback.seq, "hv1 refuses its older assignment")).toMatchObject({
      reason: "stale-revision",
      error: `revision ${older.revision} is not newer than the current revision ${running.revision}`,
    });
    expect(applying()).toEqual(appliedBefore);
    expect(JSON.parse(await readFile(join(hv1.stateDir, "checkpoint.json"), "utf8"))).toMatchObject({ current: { revision: running.revision, assignment: { hash: running.assignment.hash } } });

    // The controller's way back (a rollout's revert): the older document again, signed as the next revision. Then forward again.
    const revert = await cp!.publish(older.assignment);
    expect(revert.revision).toBeGreaterThan(running.revision);
    expect(await cp!.waitForApplied("hv1", revert.revision, 30_000)).toMatchObject({ revision: revert.revision, hash: older.assignment.hash });
    const forward = await cp!.publish(running.assignment);
    expect(await cp!.waitForApplied("hv1", forward.revision, 30_000)).toMatchObject({ revision: forward.revision, hash: running.assignment.hash });
    expect(applying()).toEqual([...appliedBefore, revert.revision, forward.revision]);
  });

  it("the storm: at least 1,000 hostile messages change nothing, crash nothing, and each is refused with a logged reason", async () => {
    const hv1 = await cp!.desired.read("hv1");
    const older = await cp!.desired.atRevision("hv1", hv1!.envelope.revision - 1);
    const hv2 = await cp!.desired.read("hv2");
    const hv3Key = (await cp!.registry.claim("hv3"))!.claimKey;
    const maxPayload = cp!.nc.info!.max_payload;
    const shots = buildShots({
      seed: SEED,
      maxPayload,
      signing: serve!.secrets.signing,
      enrollPassword: serve!.secrets.enrollment.enrollPassword,
      hv1: { current: hv1!.envelope, older: older! },
      hv2: hv2!.envelope,
      leases,
      hv3Key,
    });
    const before = await snapshot();
    const t0 = Date.now();
    const serveRefusals = () => eventsOf(serve!.proc, "bad-message").length;
    // A claim with a wrong token is refused with a logged reason (wrong token, or the name's rate limit), nothing written.
    const serveClaims = () => serve!.proc.events.filter((e) => e.event === "enroll-refused" && e.host === "hv1").length;
    const refusedBefore = serveRefusals();
    const leasesRefusedBefore = eventsOf(agents.hv1!, "leases-rejected").length;
    const welcomesBefore = eventsOf(agents.hv3!, "welcome-ignored").length;
    const problems: string[] = [];
    const buckets: Partial<Record<Shot["target"], string>> = { desired: desiredBucket(SITE), leases: leasesBucket(SITE), applied: appliedBucket(SITE), corrective: correctiveBucket(SITE) };

    for (const [i, shot] of shots.entries()) {
      const a = conns[shot.creds]!;
      const where = `shot ${i} (${shot.target} ${shot.kind}, seed ${SEED})`;
      const bucket = buckets[shot.target];
      if (bucket) {
        const put = shot.target === "desired" ? await desiredPut(a, shot.subject, shot.data) : await kvPut(a, bucket, shot.subject, shot.data);
        if (shot.target === "desired" && shot.expect === "refused") {
          if (put.seq === undefined) problems.push(`${where}: not stored (${put.error})`);
          else await agents.hv1!.log.waitFor((e) => e.event === "assignment-rejected" && e.seq === put.seq, `${where}: hv1 logs its refusal`, 15_000);
        }
      } else if (shot.target === "admin" || shot.target === "check") {
        // A check goes as the controller sends it: the agent answers on its own reply subject, and may publish to no inbox.
        const asked = shot.target === "check" ? requestAgent(a.nc, SITE, "hv1", shot.subject, shot.data, 15_000) : a.nc.request(shot.subject, shot.data, { timeout: 15_000 });
        const reply = JSON.parse((await asked).string()) as { ok?: boolean };
        if (reply.ok !== false) problems.push(`${where}: answered ${JSON.stringify(reply).slice(0, 200)}`);
      } else {
        a.nc.publish(shot.subject, shot.data);
        if (i % 20 === 0) await a.nc.flush();
      }
    }
    for (const c of Object.values(conns)) await c.nc.flush();
    const sentMs = Date.now() - t0;

    // Every hostile message to serve is refused with a logged reason; every claim is recorded as one.
    const toServe = shots.filter((s) => ["enroll", "report", "heartbeat"].includes(s.target));
    const refusedByServe = toServe.filter((s) => s.expect === "refused").length;
    await until(() => serveRefusals() - refusedBefore >= refusedByServe, `serve logs ${refusedByServe} refusals`);
    await until(() => serveClaims() >= shots.filter((s) => s.expect === "claim").length, "serve records the claims");
    const leasesRefused = shots.filter((s) => s.target === "leases" && s.expect === "refused").length;
    await until(() => eventsOf(agents.hv1!, "leases-rejected").length - leasesRefusedBefore >= leasesRefused, `hv1 refuses ${leasesRefused} lease tables`);
    const welcomes = shots.filter((s) => s.target === "welcome").length;
    await until(() => eventsOf(agents.hv3!, "welcome-ignored").length - welcomesBefore >= welcomes, `hv3 ignores ${welcomes} welcomes`);
    expect(serveRefusals() - refusedBefore).toBe(refusedByServe);

    // hv1's reply inbox as the controller's credentials can see it (the reply subject of its direct get): hostile
    // replies to requests it never made. A last refused write to its desired key comes after them on its connection.
    const ctl = conns.controller!;
    const sniff = ctl.nc.subscribe(`$JS.API.DIRECT.GET.KV_${desiredBucket(SITE)}.>`, { max: 1 });
    const sniffed = (async () => {
      for await (const m of sniff) return m.reply;
      return undefined;
    })();
    await ctl.nc.flush();
    const trigger = await desiredPut(ctl, "hv1", encodeMessage({ trigger: SEED }));
    await agents.hv1!.log.waitFor((e) => e.event === "assignment-rejected" && e.seq === trigger.seq, "hv1 refuses the trigger");
    const reply = await sniffed;
    expect(reply).toMatch(/^_nf_inbox\.lab\.hv1\./);
    const prefix = reply!.slice(0, reply!.lastIndexOf(".") + 1);
    const inbox = sampleHostile((await cp!.desired.read("hv2"))!.envelope, { seed: SEED * 31 + 13, count: 40, maxBytes: maxPayload, accepted: () => false });
    for (const [i, v] of inbox.entries()) ctl.nc.publish(`${prefix}fz${i}`, v.data);
    const last = await desiredPut(ctl, "hv1", encodeMessage({ last: SEED }));
    await agents.hv1!.log.waitFor((e) => e.event === "assignment-rejected" && e.seq === last.seq, "hv1 refuses the last write");

    // What no attacker may do at all: permission violations, and payloads above max_payload on the wire.
    const denied: [Creds, string][] = [
      ["hv2", kvSubject(desiredBucket(SITE), "hv1")],
      ["hv2", kvSubject(desiredBucket(SITE), "hv2")],
      ["hv2", kvSubject(appliedBucket(SITE), "hv1")],
      ["hv2", kvSubject(leasesBucket(SITE), "gw1")],
      ["hv2", "nf.lab.report.hv1"],
      ["hv2", "nf.lab.hb.hv1"],
      ["hv2", "nf.lab.enroll.hv1"],
      ["hv2", "nf.lab.check.hv1"],
      ["hv2", "nf.lab.admin"],
      ["hv2", "nf.lab.welcome.hv3"],
      ["hv2", "_nf_inbox.lab.hv1.fz"],
      ["enroll", "_nf_inbox.lab.hv1.fz"],
      ["gw1", kvSubject(leasesBucket(SITE), "hv1")],
      ["gw1", kvSubject(desiredBucket(SITE), "hv1")],
      ["gw1", "nf.lab.report.hv1"],
      ["enroll", "nf.lab.welcome.hv3"],
      ["enroll", "nf.lab.report.hv1"],
      ["enroll", "nf.lab.hb.hv1"],
      ["enroll", "nf.lab.admin"],
      ["enroll", "nf.lab.check.hv1"],
      ["enroll", kvSubject(desiredBucket(SITE), "hv1")],
      ["enroll", kvSubject(leasesBucket(SITE), "gw1")],
    ];
    for (const [creds, subject] of denied) {
      const a = conns[creds]!;
      a.nc.publish(subject, encodeMessage({ kind: "report", forged: true }));
      await a.nc.flush();
      await until(() => a.errors.some((e) => e.includes(`Permissions Violation for Publish to "${subject}"`)), `${creds} may not publish to ${subject}`, 5000);
    }
    const wire = await Promise.all(
      (
        [
          ["enroll", `enroll-${SITE}`, serve!.secrets.enrollment.enrollPassword, "nf.lab.enroll.hv1"],
          ["hv2", (await agentCredentials(agents.hv2!)).user, (await agentCredentials(agents.hv2!)).password, "nf.lab.report.hv2"],
          ["controller", serve!.secrets.controller.user, serve!.secrets.controller.password, kvSubject(desiredBucket(SITE), "hv1")],
        ] as const
      ).flatMap(([, user, pass, subject]) =>
        [maxPayload + 1, maxPayload * 4].map((size) => oversizedPublish({ host: "127.0.0.1", port: PORT, user, pass, subject, size })),
      ),
    );
    for (const w of wire) {
      expect(w.lines.some((l) => /Maximum Payload Violation/i.test(l))).toBe(true);
      expect(w.closed).toBe(true);
    }

    // Nothing changed, every process lives, nothing was logged that should not have been.
    expect(problems).toEqual([]);
    expect(await snapshot()).toEqual(before);
    expect({ serve: alive(serve!.proc.pid) && serve!.proc.child.exitCode === null, nats: alive(serve!.natsPid) }).toEqual({ serve: true, nats: true });
    for (const a of Object.values(agents)) expect({ name: a.name, pid: a.child?.pid ?? process.pid, running: a.running() }).toEqual({ name: a.name, pid: a.child?.pid ?? process.pid, running: true });
    for (const p of [serve!.proc, ...Object.values(agents)]) {
      expect({ name: p.name, noise: p.noise }).toEqual({ name: p.name, noise: [] });
      expect({ name: p.name, errors: p.events.filter((e) => ["handler-error", "sync-error", "leases-error", "uncaught"].includes(String(e.event))) }).toEqual({ name: p.name, errors: [] });
    }
    const count = shots.length + 2 + inbox.length + denied.length + wire.length;
    const perKind = countBy(shots, (s) => `${s.target}/${s.kind}`);
    console.log(`fuzz storm: ${count} messages in ${((Date.now() - t0) / 1000).toFixed(1)} s (sent in ${(sentMs / 1000).toFixed(1)} s, from ${((t0 - started) / 1000).toFixed(1)} s after the suite started) (seed ${SEED}): ${shots.length} delivered, 2 + ${inbox.length} to hv1's desired key and reply inbox, ${denied.length} refused by permissions, ${wire.length} above max_payload\n${JSON.stringify(countBy(shots, (s) => s.target))}\n${JSON.stringify(perKind)}`);
    expect(count).toBeGreaterThanOrEqual(1000);
  }, 180_000);

  it("positive controls right after the storm: an assignment, a report, a lease table and an enrollment still go through end to end", async () => {
    const next = await cp!.publish(hv1Assignment(3));
    const report = await cp!.waitForApplied("hv1", next.revision, 20_000);
    expect(report).toMatchObject({ host: "hv1", revision: next.revision, hash: next.hash });
    const hv2Next = await cp!.publish(sysctlAssignment("hv2", 2));
    expect(await cp!.waitForApplied("hv2", hv2Next.revision, 20_000)).toMatchObject({ revision: hv2Next.revision });
    const written = eventsOf(agents.hv1!, "leases-written").length;
    const newer: LeaseTable = { ...leases, at: Date.now() + 1, networks: { service: [...leases.networks.service!, { mac: "52:54:00:82:00:02", ip: "10.82.0.102", expires: Math.floor(Date.now() / 1000) + 3600 }] } };
    await kvPut(conns.gw1!, leasesBucket(SITE), "gw1", encodeMessage(newer));
    await until(() => eventsOf(agents.hv1!, "leases-written").length > written, "hv1 writes gw1's newer leases");
    expect(JSON.parse(await readFile(networkLeasesPath(join(dir, "run", "hv1"), "service"), "utf8"))).toMatchObject({ host: "gw1", leases: [{ ip: "10.82.0.101" }, { ip: "10.82.0.102" }] });

    // hv3, quarantined and sent forged welcomes all storm long, is approved by the operator and connects.
    await cp!.admin("approve", "hv3");
    await until(() => eventsOf(agents.hv3!, "connected").length > 0, "hv3 connects with its credentials");
    const hv3Next = await cp!.publish(sysctlAssignment("hv3", 1));
    expect(await cp!.waitForApplied("hv3", hv3Next.revision, 20_000)).toMatchObject({ revision: hv3Next.revision });
    expect((await cp!.status()).filter((r) => HOSTS.includes(r.host as (typeof HOSTS)[number])).map((r) => [r.host, r.state])).toEqual(HOSTS.map((h) => [h, "approved"]));
  }, 120_000);
});

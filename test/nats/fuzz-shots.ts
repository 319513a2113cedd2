/**
 * The NATS fuzz suite's messages: for every subject serve and the agents
 * subscribe to and every KV key they watch, seeded hostile variants of a
 * valid message (fuzz-messages.ts) that the product's own decoder and
 * checks refuse, plus hand-made attacks of the same kind (replays, forged
 * signatures, other-host and older assignments, other-host and older lease
 * tables, claims with a wrong token, forged welcomes). Each shot names the
 * credentials it is sent with, as an attacker would hold them: the join
 * token's enrollment user, an enrolled agent's own credentials (hv2; gw1,
 * the backend), or the controller's.
 */
import { randomBytes } from "node:crypto";
import {
  AdminRequest,
  CheckRequest,
  EnrollFacts,
  Heartbeat,
  LeaseTable,
  Report,
  decodeMessage,
  decodeSignedAssignment,
  generateBoxKeys,
  generateSigningKeys,
  seal,
  sealAssignment,
  signAssignment,
  verifySignedAssignment,
  welcomeContext,
  type HostAssignment,
  type SignedAssignment,
  type UnverifiedEnvelope,
} from "@netfleet/shared";
import { sampleHostile, type Mutation } from "./fuzz-messages.ts";
import { SITE } from "./fuzz-fleet.ts";

export type Creds = "enroll" | "hv2" | "gw1" | "controller";

/** Where a shot goes and what the suite expects of it. */
export type Target = "enroll" | "report" | "heartbeat" | "admin" | "check" | "welcome" | "desired" | "leases" | "applied" | "corrective";

export interface Shot {
  target: Target;
  /** A mutation of fuzz-messages.ts, or a hand-made attack (replay, forged-signature, other-host, older, claim ...). */
  kind: Mutation | string;
  creds: Creds;
  /** Subject (core publish or request) or, for KV targets, the key. */
  subject: string;
  data: Uint8Array;
  /**
   * What the receiver does: "refused" logs a refusal, "silent" changes
   * nothing without a word (a replay of what is in force), "claim" records
   * a pending claim on an approved host (a documented feature).
   */
  expect: "refused" | "silent" | "claim";
}

const enc = new TextEncoder();
const json = (v: unknown) => enc.encode(JSON.stringify(v));
const ok = (f: () => unknown): boolean => {
  try {
    f();
    return true;
  } catch {
    return false;
  }
};

export interface ShotContext {
  seed: number;
  maxPayload: number;
  signing: { privateKeyPem: string; publicKeyPem: string };
  enrollPassword: string;
  /** hv1's envelope in force, and one it had before. */
  hv1: { current: UnverifiedEnvelope; older: UnverifiedEnvelope };
  /** hv2's envelope in force (valid, signed, for another host). */
  hv2: UnverifiedEnvelope;
  /** The lease table in force for gw1 (hv1 follows it). */
  leases: LeaseTable;
  /** hv3's enrollment key (in its quarantined record): a welcome sealed to it under the wrong context. */
  hv3Key: string;
}

const KERNEL = { "8021q": { loaded: true, available: true }, bonding: { loaded: true, available: true }, openvswitch: { loaded: true, available: true } };

function facts(hostname: string, token: string): EnrollFacts {
  return {
    kind: "enroll",
    site: SITE,
    hostname,
    token,
    agentVersion: "0.1.0",
    interfaces: [{ name: "eth0", mac: "52:54:00:66:66:01", state: "UP", kind: null }],
    kernel: KERNEL,
    ovsVersion: "3.1.0",
    libvirtVersion: "9.0.0",
    publicKey: generateBoxKeys().publicKey,
    sentAt: new Date().toISOString(),
  };
}

function flipBit(text: string, at: number): string {
  const bytes = Buffer.from(text, "base64");
  bytes[at % bytes.length]! ^= 1 << (at % 8);
  return bytes.toString("base64");
}

function hostileShots(target: Target, creds: Creds, subject: string, base: unknown, seed: number, count: number, maxPayload: number, accepted: (d: Uint8Array) => boolean): Shot[] {
  return sampleHostile(base, { seed, count, maxBytes: maxPayload, accepted }).map((v) => ({ target, kind: v.mutation, creds, subject, data: v.data, expect: "refused" as const }));
}

/** Every shot of the storm, in sending order (deterministic for a seed). */
export function buildShots(c: ShotContext): Shot[] {
  const shots: Shot[] = [];
  const s = (n: number) => c.seed * 31 + n;
  const wrongToken = `${c.enrollPassword}.wrong-secret-wrong-secret-0000`;
  const mallory = generateSigningKeys();

  // serve: enrollments with the join token's user, on the approved host's subject and on others.
  const enrollAccepted = (subjectHost: string) => (d: Uint8Array) =>
    ok(() => {
      const f = decodeMessage(EnrollFacts, "x", d);
      if (f.site !== SITE || f.hostname !== subjectHost) throw new Error("refused");
    });
  shots.push(...hostileShots("enroll", "enroll", "nf.lab.enroll.hv1", facts("hv1", wrongToken), s(1), 110, c.maxPayload, enrollAccepted("hv1")));
  shots.push(...hostileShots("enroll", "enroll", "nf.lab.enroll.zzfuzz", facts("zzfuzz", wrongToken), s(2), 40, c.maxPayload, enrollAccepted("zzfuzz")));
  shots.push(...hostileShots("enroll", "hv2", "nf.lab.enroll.hv2", facts("hv2", wrongToken), s(3), 40, c.maxPayload, enrollAccepted("hv2")));
  for (let i = 0; i < 8; i++) shots.push({ target: "enroll", kind: "other-host", creds: "enroll", subject: "nf.lab.enroll.hv1", data: json(facts(i % 2 ? "hv2" : "gw1", c.enrollPassword + ".x")), expect: "refused" });
  for (let i = 0; i < 4; i++) shots.push({ target: "enroll", kind: "other-site", creds: "enroll", subject: "nf.lab.enroll.hv1", data: json({ ...facts("hv1", wrongToken), site: "other" }), expect: "refused" });
  for (let i = 0; i < 6; i++) shots.push({ target: "enroll", kind: "claim-wrong-token", creds: "enroll", subject: "nf.lab.enroll.hv1", data: json(facts("hv1", wrongToken)), expect: "claim" });

  // serve: reports and heartbeats with hv2's own credentials.
  const report: Report = {
    kind: "report",
    site: SITE,
    host: "hv2",
    revision: c.hv2.revision,
    hash: c.hv2.assignment.hash,
    rolledBack: false,
    summary: { ok: 1, changed: 0, failed: 0, pending: 0 },
    results: [{ id: "sysctl[net.sim.hv2]", result: true }],
    at: new Date().toISOString(),
  };
  const hb: Heartbeat = { kind: "heartbeat", site: SITE, host: "hv2", agentVersion: "0.1.0", revision: c.hv2.revision, hash: c.hv2.assignment.hash, uptimeS: 5, at: new Date().toISOString() };
  const ownAccepted = (schema: typeof Report | typeof Heartbeat) => (d: Uint8Array) =>
    ok(() => {
      const m = decodeMessage(schema, "x", d);
      if (m.host !== "hv2" || m.site !== SITE) throw new Error("refused");
    });
  shots.push(...hostileShots("report", "hv2", "nf.lab.report.hv2", report, s(4), 100, c.maxPayload, ownAccepted(Report)));
  shots.push(...hostileShots("heartbeat", "hv2", "nf.lab.hb.hv2", hb, s(5), 80, c.maxPayload, ownAccepted(Heartbeat)));
  for (let i = 0; i < 6; i++) {
    shots.push({ target: "report", kind: "other-host", creds: "hv2", subject: "nf.lab.report.hv2", data: json({ ...report, host: "hv1", revision: 900 + i }), expect: "refused" });
    shots.push({ target: "heartbeat", kind: "other-host", creds: "hv2", subject: "nf.lab.hb.hv2", data: json({ ...hb, host: "hv1" }), expect: "refused" });
  }
  for (let i = 0; i < 4; i++) shots.push({ target: "heartbeat", kind: "replay", creds: "hv2", subject: "nf.lab.hb.hv2", data: json(hb), expect: "silent" });

  // serve: operator requests as the controller would send them (never one that acts on a real host).
  const admin: AdminRequest = { kind: "admin", action: "approve", host: "zznobody" };
  shots.push(...hostileShots("admin", "controller", "nf.lab.admin", admin, s(6), 50, c.maxPayload, (d) => ok(() => decodeMessage(AdminRequest, "x", d))));
  for (let i = 0; i < 10; i++) shots.push({ target: "admin", kind: "unknown-host", creds: "controller", subject: "nf.lab.admin", data: json({ ...admin, action: i % 2 ? "reject" : "approve", host: `zz${i}` }), expect: "refused" });

  // agent hv1: check-mode requests (controller's credentials).
  const check: CheckRequest = { kind: "check", site: SITE, host: "hv1", envelope: c.hv1.current };
  const checkAccepted = (d: Uint8Array) =>
    ok(() => {
      const r = decodeMessage(CheckRequest, "x", d);
      if (r.host !== "hv1" || r.site !== SITE) throw new Error("refused");
      verifySignedAssignment(decodeSignedAssignment("x", JSON.stringify(r.envelope)), c.signing.publicKeyPem, 0, { site: SITE, host: "hv1" });
    });
  shots.push(...hostileShots("check", "controller", "nf.lab.check.hv1", check, s(7), 60, c.maxPayload, checkAccepted));
  shots.push({ target: "check", kind: "other-host", creds: "controller", subject: "nf.lab.check.hv1", data: json({ ...check, envelope: c.hv2 }), expect: "refused" });
  shots.push({ target: "check", kind: "other-host", creds: "controller", subject: "nf.lab.check.hv1", data: json({ ...check, host: "hv2" }), expect: "refused" });
  shots.push({ target: "check", kind: "another-key", creds: "controller", subject: "nf.lab.check.hv1", data: json({ ...check, envelope: signAssignment(c.hv1.current.assignment, 5, mallory.privateKeyPem) }), expect: "refused" });

  // agent hv3 (waiting for approval): forged welcomes.
  const box = seal(generateBoxKeys().publicKey, JSON.stringify({ forged: true }), welcomeContext(SITE, "hv3"));
  const welcome = { kind: "welcome", site: SITE, hostname: "hv3", ...box };
  shots.push(...hostileShots("welcome", "controller", "nf.lab.welcome.hv3", welcome, s(8), 50, c.maxPayload, () => false));
  shots.push({ target: "welcome", kind: "another-key", creds: "controller", subject: "nf.lab.welcome.hv3", data: json(welcome), expect: "refused" });
  shots.push({ target: "welcome", kind: "wrong-context", creds: "controller", subject: "nf.lab.welcome.hv3", data: json({ ...welcome, ...seal(c.hv3Key, JSON.stringify({ forged: true }), welcomeContext(SITE, "hv2")) }), expect: "refused" });

  // agent hv1: its desired key, written as the controller would (only the controller may).
  const pub = c.signing.publicKeyPem;
  const same = (e: UnverifiedEnvelope) =>
    e.revision === c.hv1.current.revision && e.signature === c.hv1.current.signature && e.signedAt === c.hv1.current.signedAt && e.keyId === c.hv1.current.keyId && e.assignment.hash === c.hv1.current.assignment.hash;
  // Accepted: it verifies (a legitimate newer assignment), or it is the one in force, byte for byte in what is signed (a replay: silent).
  const desiredAccepted = (d: Uint8Array) =>
    ok(() => {
      const e = decodeSignedAssignment("x", d);
      if (!same(e)) verifySignedAssignment(e, pub, c.hv1.current.revision, { site: SITE, host: "hv1" });
    });
  const cur = c.hv1.current as SignedAssignment;
  const desired = (kind: string, value: unknown, expect: Shot["expect"] = "refused") => shots.push({ target: "desired", kind, creds: "controller", subject: "hv1", data: json(value), expect });
  desired("replay-older", c.hv1.older);
  desired("other-host", c.hv2);
  desired("other-host", signAssignment(c.hv2.assignment as HostAssignment, cur.revision + 1000, c.signing.privateKeyPem));
  const { hash: _hash, ...body } = cur.assignment;
  desired("other-site", signAssignment(sealAssignment({ ...body, site: "other" }), cur.revision + 1000, c.signing.privateKeyPem));
  desired("older", signAssignment(c.hv1.older.assignment, cur.revision, c.signing.privateKeyPem));
  desired("older", signAssignment(c.hv1.older.assignment, 1, c.signing.privateKeyPem));
  desired("another-key", signAssignment(cur.assignment, cur.revision + 1000, mallory.privateKeyPem));
  desired("another-key", { ...signAssignment(cur.assignment, cur.revision + 1000, mallory.privateKeyPem), keyId: cur.keyId });
  desired("unsigned", { assignment: cur.assignment, revision: cur.revision + 1000, signedAt: cur.signedAt });
  desired("forged-signature", { ...cur, revision: cur.revision + 1 });
  desired("forged-signature", { ...cur, signedAt: new Date(Date.parse(cur.signedAt) + 1000).toISOString() });
  for (let i = 0; i < 24; i++) desired("forged-signature", { ...cur, revision: cur.revision + 1000, signature: flipBit(cur.signature, i * 13 + 1) });
  for (let i = 0; i < 3; i++) desired("replay-current", cur, "silent");
  // Last, so the key's whole history (5 values) ends up holding values that do not decode: the controller's next publish must still count on from the agent's revision.
  shots.push(...hostileShots("desired", "controller", "hv1", c.hv1.current, s(9), 230, c.maxPayload, desiredAccepted));

  // agent hv1: gw1's key of the leases bucket, written with the backend's own credentials.
  const leasesAccepted = (d: Uint8Array) =>
    ok(() => {
      const t = decodeMessage(LeaseTable, "x", d);
      if (t.host !== "gw1" || t.at < c.leases.at) throw new Error("refused");
    });
  shots.push(...hostileShots("leases", "gw1", "gw1", c.leases, s(10), 140, c.maxPayload - 64 * 1024, leasesAccepted));
  const lease = (kind: string, value: unknown, expect: Shot["expect"] = "refused") => shots.push({ target: "leases", kind, creds: "gw1", subject: "gw1", data: json(value), expect });
  for (let i = 1; i <= 5; i++) lease("older", { ...c.leases, at: c.leases.at - i, networks: { service: [] } });
  for (let i = 1; i <= 5; i++) lease("other-host", { ...c.leases, host: "hv2", at: c.leases.at + i * 1000, networks: { service: [] } });
  for (let i = 0; i < 3; i++) lease("replay-current", c.leases, "silent");

  // serve's status reads: hv2's own keys of the applied and corrective buckets.
  shots.push(...hostileShots("applied", "hv2", "hv2", report, s(11), 30, c.maxPayload, () => false));
  const corrective = { kind: "corrective-log", site: SITE, host: "hv2", count: 1, recent: [{ id: "sysctl[x]", at: report.at, corrective: true, changes: [{ field: "value", before: "0", after: "1" }] }], at: report.at };
  shots.push(...hostileShots("corrective", "hv2", "hv2", corrective, s(12), 30, 256 * 1024, () => false));
  return shots;
}

/** Random bytes as base64, for forged boxes (the suite's own nonce too). */
export function nonce(): string {
  return randomBytes(6).toString("hex");
}

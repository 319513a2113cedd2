import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { writeOwned } from "@netfleet/agent";
import { createPrivateKey, createPublicKey, sign, verify } from "node:crypto";
import { DIFF_MAX_CHARS, DNS_LABEL, FieldChange, ResultsSummary, canonicalJson } from "@netfleet/shared";
import { z } from "zod";

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, "a sha256 in hex (64 digits 0-9a-f)");

/** One resource the check said would change: its id, the fields, and (where the agent gave them) old → new values and a unified diff. */
export const PlannedChange = z.strictObject({
  id: z.string().min(1).max(200),
  /** Names of the fields that would change (sorted as the agent sent them). */
  fields: z.array(z.string().max(200)).max(200),
  /** Per field: what the host has (`before`) and what it would get (`after`), as text, as the agent reported them (FieldChange). */
  values: z.array(FieldChange).max(64).optional(),
  /** A unified diff (live → desired) of a text the resource is made of (nft ruleset, dnsmasq files, libvirt XML, flows). */
  diff: z.string().max(DIFF_MAX_CHARS).optional(),
});
export type PlannedChange = z.output<typeof PlannedChange>;

/** One host of a plan: what it gets, and what the plan was made against (its desired entry and its agent's observation). */
export const PlannedHost = z.strictObject({
  host: z.string().regex(DNS_LABEL, "a host name (DNS label)"),
  role: z.enum(["backend", "vmhost"]),
  /** Content hash of the assignment the plan brings (HostAssignment.hash). */
  assignment: sha256Hex,
  /** Where the host stood against it when planned (diff.ts HostDiffStatus). */
  status: z.enum(["new", "changed", "unconverged", "unchanged"]),
  /** KV revision of the host's desired entry the plan was made against (0: none); the publish compares and sets on it. */
  basedOn: z.number().int().min(0),
  /** The assignment desired then (revision and content hash); null: none. */
  from: z.strictObject({ revision: z.number().int().min(1), hash: sha256Hex }).nullable(),
  /** The agent's observed-state hash from its check reply: the agent refuses the plan's envelope when its host no longer hashes to it. */
  observed: sha256Hex,
  summary: ResultsSummary,
  changes: z.array(PlannedChange).max(10_000),
});
export type PlannedHost = z.output<typeof PlannedHost>;

/** A plan file (`netfleet rollout --check --out FILE`), applied by `netfleet rollout --plan FILE`. */
export const PlanFile = z
  .strictObject({
    kind: z.literal("netfleet-plan"),
    /** Format of this file; a reader refuses any other. */
    version: z.literal(1),
    site: z.string().regex(DNS_LABEL, "a site name (DNS label)"),
    createdAt: z.iso.datetime({ offset: true }),
    /** The --limit patterns the check was run with (information only: the plan's hosts are the ones listed). */
    limit: z.array(z.string().max(200)).max(1000).optional(),
    hosts: z.array(PlannedHost).min(1).max(100_000),
    /**
     * Ed25519 (RFC 8032, node:crypto) by the controller's signing key over the canonical JSON of every other field:
     * an edited plan (a host's status, changes or hashes) is refused before anything is published.
     */
    signature: z.strictObject({ keyId: z.string().max(64), value: z.string().max(200) }),
  })
  .superRefine((plan, ctx) => {
    const seen = new Set<string>();
    for (const [i, h] of plan.hosts.entries()) {
      if (seen.has(h.host)) ctx.addIssue({ code: "custom", path: ["hosts", i, "host"], message: `${h.host} is listed twice` });
      seen.add(h.host);
    }
  });
export type PlanFile = z.output<typeof PlanFile>;
/** A plan before it is signed (makePlan). */
export type UnsignedPlan = Omit<PlanFile, "signature">;

/** The bytes a plan's signature covers: the canonical JSON of the plan without its signature. */
function signedBytes(plan: UnsignedPlan | PlanFile): Buffer {
  const { signature: _signature, ...rest } = plan as PlanFile;
  return Buffer.from(canonicalJson(rest));
}

/** The plan signed with the controller's key (PKCS#8 PEM, Ed25519) named `keyId`. */
export function signPlan(plan: UnsignedPlan, signing: { keyId: string; privateKeyPem: string }): PlanFile {
  return { ...plan, signature: { keyId: signing.keyId, value: sign(null, signedBytes(plan), createPrivateKey(signing.privateKeyPem)).toString("base64") } };
}

/** Whether the plan is signed by this controller's key (SPKI PEM, `keyId`) and unchanged since. */
export function planSignedBy(plan: PlanFile, signing: { keyId: string; publicKeyPem: string }): boolean {
  if (plan.signature.keyId !== signing.keyId) return false;
  try {
    return verify(null, signedBytes(plan), createPublicKey(signing.publicKeyPem), Buffer.from(plan.signature.value, "base64"));
  } catch {
    return false;
  }
}

/** A plan file that cannot be used; the message is one line naming the file and the problem. */
export class PlanFileError extends Error {
  readonly file: string;
  constructor(file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = "PlanFileError";
    this.file = file;
  }
}

/** Plans larger than this are refused unread (100 000 hosts of plain changes fit well below it). */
export const MAX_PLAN_BYTES = 256 * 1024 * 1024;

/**
 * Reads and validates a plan file strictly: a regular file of at most
 * MAX_PLAN_BYTES, UTF-8 JSON, exactly PlanFile (no unknown key anywhere,
 * each host once).
 * @throws PlanFileError naming the file and the first problem (with the JSON path of a bad field).
 */
export async function readPlanFile(file: string): Promise<PlanFile> {
  let text: string;
  try {
    // Non-blocking and not through a link: a FIFO or a device is refused by the fstat below, never waited on.
    const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
    try {
      const st = await handle.stat();
      if (!st.isFile()) throw new PlanFileError(file, "not a regular file");
      if (st.size > MAX_PLAN_BYTES) throw new PlanFileError(file, `${st.size} bytes; a plan is at most ${MAX_PLAN_BYTES}`);
      text = new TextDecoder("utf-8", { fatal: true }).decode(await handle.readFile());
    } finally {
      await handle.close();
    }
  } catch (err) {
    if (err instanceof PlanFileError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.code === "ELOOP") throw new PlanFileError(file, "a symbolic link; give the plan file itself");
    throw new PlanFileError(file, e.code ? `cannot read (${e.code})` : `not UTF-8 text (${e.message})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new PlanFileError(file, `not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || (value as { kind?: unknown }).kind !== "netfleet-plan") {
    throw new PlanFileError(file, 'not a netfleet plan (no "kind": "netfleet-plan"); write one with netfleet rollout SITE --check --out FILE');
  }
  const parsed = PlanFile.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const path = issue.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("").replace(/^\./, "");
    throw new PlanFileError(file, `${path || "(top)"}: ${issue.message}`);
  }
  return parsed.data;
}

/**
 * Writes the plan as indented JSON, atomically, through the agent's and
 * controller's one atomic writer (write-owned.ts writeOwned: a random temp
 * name created O_EXCL|O_NOFOLLOW beside it, fsync, renamed over it, so
 * never through a link planted there). A plan holds no secret (assignment
 * hashes, the changes a check showed): mode 0644.
 */
export async function writePlanFile(file: string, plan: PlanFile): Promise<void> {
  await writeOwned(file, JSON.stringify(PlanFile.parse(plan), null, 2) + "\n", 0o644);
}

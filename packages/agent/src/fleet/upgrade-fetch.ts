import { createHash } from "node:crypto";
import type { Msg, NatsConnection } from "@nats-io/transport-node";
import { MAX_BUNDLE_BYTES, UpgradeRefusedError, bundleBucket, bundleStream, type BundleManifest } from "@netfleet/shared";

/**
 * The object's meta as nats.js @nats-io/obj stores it (NATS ADR-20
 * ObjectInfo): only the fields read here.
 */
interface ObjectMeta {
  name: string;
  nuid: string;
  size: number;
  chunks: number;
  digest?: string;
  deleted?: boolean;
}

/** The meta subject of `name` (ADR-20: base64url of the name, padded, as @nats-io/obj's Base64UrlPaddedCodec). */
function metaSubject(bucket: string, name: string): string {
  return `$O.${bucket}.M.${Buffer.from(name, "utf8").toString("base64url")}${"=".repeat(padding(name))}`;
}

/** Base64 padding of `name`'s encoding (0, 1 or 2 "="). */
function padding(name: string): number {
  const r = Buffer.byteLength(name, "utf8") % 3;
  return r === 0 ? 0 : 3 - r;
}

/**
 * One direct get on the stream (`$JS.API.DIRECT.GET.<stream>` with a JSON
 * body `{seq}`, `{seq, next_by_subj}` or `{last_by_subj}`; nats-server 2.9+,
 * the stream created with `allow_direct`, which @nats-io/obj sets on object
 * stores). The reply carries the message as its payload and the headers
 * Nats-Stream, Nats-Subject, Nats-Sequence; a 404 status when there is none.
 * Sources: docs.nats.io "Reading messages directly" (learn/jetstream/get-direct),
 * nats.c PR #562 (AllowDirect; Sequence, NextBySubject, LastBySubject).
 * Resolves undefined on 404 (no such message).
 * @throws on a timeout, a permission error, or another status.
 */
async function directGet(nc: NatsConnection, stream: string, body: Record<string, unknown>, timeoutMs: number): Promise<Msg | undefined> {
  const msg = await nc.request(`$JS.API.DIRECT.GET.${stream}`, JSON.stringify(body), { timeout: timeoutMs });
  const code = msg.headers?.code ?? 0;
  if (code === 404) return undefined;
  if (code !== 0 && code !== 200) throw new Error(`direct get on ${stream}: ${code} ${msg.headers?.description ?? ""}`.trim());
  return msg;
}

/**
 * Fetches the bundle `manifest` names from the site's object store, by
 * direct gets only (an agent may create no consumer): the object's meta
 * (last message on its meta subject), then each chunk in stream order
 * (`seq` + `next_by_subj` of its chunk subject). Checks as it goes that the
 * object's size is the manifest's and never reads past it; the caller
 * checks the sha256 (verifyBundle) before writing anything.
 * @throws UpgradeRefusedError "missing" (no such object, or deleted),
 *   "size-mismatch", "too-large"; a NATS error (timeout, permissions) as is.
 */
export async function fetchBundle(nc: NatsConnection, site: string, manifest: BundleManifest, timeoutMs = 5000): Promise<Uint8Array> {
  const stream = bundleStream(site);
  const bucket = bundleBucket(site);
  const metaMsg = await directGet(nc, stream, { last_by_subj: metaSubject(bucket, manifest.object) }, timeoutMs);
  if (!metaMsg) throw new UpgradeRefusedError("missing", `bundle ${manifest.object}: not in object store ${bucket}`);
  const meta = JSON.parse(Buffer.from(metaMsg.data).toString("utf8")) as ObjectMeta;
  if (meta.deleted) throw new UpgradeRefusedError("missing", `bundle ${manifest.object}: deleted from object store ${bucket}`);
  if (meta.size !== manifest.size) throw new UpgradeRefusedError("size-mismatch", `bundle ${manifest.object}: ${meta.size} bytes in the store, the signed manifest says ${manifest.size}`);
  if (meta.size > MAX_BUNDLE_BYTES) throw new UpgradeRefusedError("too-large", `bundle ${manifest.object}: ${meta.size} bytes, more than ${MAX_BUNDLE_BYTES}`);
  if (!/^[A-Za-z0-9]{1,64}$/.test(meta.nuid)) throw new UpgradeRefusedError("missing", `bundle ${manifest.object}: bad meta (nuid)`);
  const chunkSubject = `$O.${bucket}.C.${meta.nuid}`;
  const out = Buffer.alloc(meta.size);
  let filled = 0;
  let seq = 0;
  for (let i = 0; i < meta.chunks; i++) {
    const msg = await directGet(nc, stream, { seq: seq + 1, next_by_subj: chunkSubject }, timeoutMs);
    if (!msg) throw new UpgradeRefusedError("size-mismatch", `bundle ${manifest.object}: chunk ${i + 1} of ${meta.chunks} missing`);
    seq = Number(msg.headers?.get("Nats-Sequence"));
    if (!Number.isInteger(seq) || seq < 1) throw new Error(`direct get on ${stream}: no Nats-Sequence header`);
    if (filled + msg.data.length > meta.size) throw new UpgradeRefusedError("size-mismatch", `bundle ${manifest.object}: chunks hold more than ${meta.size} bytes`);
    out.set(msg.data, filled);
    filled += msg.data.length;
  }
  if (filled !== meta.size) throw new UpgradeRefusedError("size-mismatch", `bundle ${manifest.object}: chunks hold ${filled} bytes, the meta says ${meta.size}`);
  return out;
}

/**
 * Checks fetched bytes against the signed manifest: size and sha256.
 * @throws UpgradeRefusedError "size-mismatch" or "sha256-mismatch" (naming both hashes).
 */
export function verifyBundle(code: Uint8Array, manifest: BundleManifest): void {
  if (code.length !== manifest.size) throw new UpgradeRefusedError("size-mismatch", `bundle ${manifest.object}: ${code.length} bytes, the signed manifest says ${manifest.size}`);
  const got = createHash("sha256").update(code).digest("hex");
  if (got !== manifest.sha256) throw new UpgradeRefusedError("sha256-mismatch", `bundle ${manifest.object}: sha256 ${got}, the signed manifest says ${manifest.sha256}`);
}

import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import {
  AssignmentRejectedError,
  DecodeError,
  decodeSignedAssignment,
  desiredBucket,
  kvSubject,
  verifySignedAssignment,
  type SignedAssignment,
} from "@netfleet/shared";
import { pause } from "./connection.ts";
import { readKey, type StoredEntry } from "./kv.ts";
import type { Checkpoint } from "./state.ts";

/**
 * Follows the host's key of the desired bucket without a JetStream
 * consumer (an agent may create none): a core subscription on
 * `$KV.<bucket>.<host>` says something was written; `onHint` gets the
 * revision it carried (0 when it does not decode: a core message may be a
 * write the stream refused, so it is only a hint and the stored value decides).
 */
export function watchDesired(nc: NatsConnection, site: string, host: string, onHint: (revision: number) => void): Subscription {
  const sub = nc.subscribe(kvSubject(desiredBucket(site), host));
  void (async () => {
    for await (const msg of sub) {
      let hinted = 0;
      try {
        hinted = decodeSignedAssignment(msg.subject, msg.data).revision;
      } catch {
        // Only a hint; the stored value decides.
      }
      onHint(hinted);
    }
  })();
  return sub;
}

/**
 * The host's stored desired value (undefined: none). A replica may answer
 * before it has the write behind a hint: while the stored revision is below
 * `hinted`, it is read again (10 times, 100 ms apart, or until `signal`).
 */
export async function readDesired(nc: NatsConnection, site: string, host: string, hinted: number, signal: AbortSignal): Promise<StoredEntry | undefined> {
  const bucket = desiredBucket(site);
  for (let attempt = 0; ; attempt++) {
    const stored = await readKey(nc, bucket, host);
    if (!stored || attempt >= 10) return stored;
    let revision = 0;
    try {
      revision = decodeSignedAssignment("desired", stored.data).revision;
    } catch {
      return stored;
    }
    if (revision >= hinted) return stored;
    await pause(100, signal);
  }
}

/** What to do with a stored desired value. */
export type Verdict =
  | { action: "apply"; envelope: SignedAssignment }
  | { action: "keep" }
  | { action: "reject"; reason: string; error: string };

/**
 * Judges a stored desired value against the checkpoint: `keep` when it is the
 * envelope in force, unaltered, or the revision lockout protection undid;
 * `apply` when it decodes, is signed by `signingKeyPem`, names this site and
 * host and is newer than both the revision in force and the one undone;
 * else `reject` with the reason (`decode`, or AssignmentRejectedError's).
 * A value carrying the signature in force on anything else (another
 * signedAt, keyId or document) is verified, and refused.
 */
export function judgeDesired(stored: StoredEntry, checkpoint: Checkpoint, signingKeyPem: string, where: { site: string; host: string }): Verdict {
  const floor = Math.max(checkpoint.current?.revision ?? 0, checkpoint.rolledBack?.revision ?? 0);
  try {
    const decoded = decodeSignedAssignment(`kv ${desiredBucket(where.site)}/${where.host}@${stored.seq}`, stored.data);
    if (inForce(decoded, checkpoint.current)) return { action: "keep" };
    const undone = checkpoint.rolledBack;
    if (undone && decoded.revision === undone.revision && decoded.assignment.hash === undone.hash) return { action: "keep" };
    return { action: "apply", envelope: verifySignedAssignment(decoded, signingKeyPem, floor, where) };
  } catch (err) {
    if (err instanceof AssignmentRejectedError) return { action: "reject", reason: err.reason, error: err.message };
    if (err instanceof DecodeError) return { action: "reject", reason: "decode", error: err.message };
    throw err;
  }
}

/** True when `decoded` is `current` in every signed field (revision, signedAt, keyId, document hash) and signature. */
function inForce(decoded: { revision: number; signedAt: string; signature?: string; keyId?: string; assignment: { hash: string } }, current: SignedAssignment | undefined): boolean {
  return (
    current !== undefined &&
    decoded.revision === current.revision &&
    decoded.signature === current.signature &&
    decoded.signedAt === current.signedAt &&
    decoded.keyId === current.keyId &&
    decoded.assignment.hash === current.assignment.hash
  );
}

import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { appendFileSync, mkdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";

/**
 * OpenSSH known_hosts: `[@marker] patterns keytype base64 [comment]`, where
 * patterns are comma-separated names with `*`/`?` wildcards and `!`
 * negation, `[host]:port` for ports other than 22, or one hashed name
 * `|1|salt|HMAC-SHA1(salt, name)`. @cert-authority lines are skipped (no
 * host certificates here); @revoked keys are refused for their hosts.
 */

export interface KnownHostEntry {
  line: number;
  marker: "cert-authority" | "revoked" | null;
  /** Plain patterns, or the hashed form as one `{salt, hash}`. */
  patterns: string[];
  hashed: { salt: Buffer; hash: Buffer } | null;
  keyType: string;
  key: Buffer;
}

export type HostKeyVerdict =
  | { kind: "known"; line: number }
  | { kind: "changed"; line: number; knownFingerprint: string; keyType: string }
  | { kind: "revoked"; line: number }
  | { kind: "unknown" };

export function parseKnownHosts(text: string): { entries: KnownHostEntry[]; problems: { line: number; message: string }[] } {
  const entries: KnownHostEntry[] = [];
  const problems: { line: number; message: string }[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = i + 1;
    const s = raw.trim();
    if (s === "" || s.startsWith("#")) return;
    const fields = s.split(/[ \t]+/);
    let marker: KnownHostEntry["marker"] = null;
    if (fields[0]!.startsWith("@")) {
      const m = fields.shift()!;
      if (m === "@cert-authority") marker = "cert-authority";
      else if (m === "@revoked") marker = "revoked";
      else return problems.push({ line, message: `unknown marker ${m}` });
    }
    const [hosts, keyType, b64] = fields;
    if (!hosts || !keyType || !b64) return problems.push({ line, message: "want: hosts keytype base64-key" });
    const key = Buffer.from(b64, "base64");
    if (key.length === 0 || blobKeyType(key) !== keyType) return problems.push({ line, message: `the ${keyType} key does not decode` });
    let hashed: KnownHostEntry["hashed"] = null;
    let patterns: string[] = [];
    if (hosts.startsWith("|1|")) {
      const [, , salt, hash] = hosts.split("|");
      hashed = { salt: Buffer.from(salt ?? "", "base64"), hash: Buffer.from(hash ?? "", "base64") };
      if (hashed.salt.length === 0 || hashed.hash.length !== 20) return problems.push({ line, message: "bad hashed host name" });
    } else {
      patterns = hosts.split(",").filter(Boolean);
    }
    entries.push({ line, marker, patterns, hashed, keyType, key });
  });
  return { entries, problems };
}

/** The name known_hosts stores for a host and port: `host`, or `[host]:port` when the port is not 22. */
export function hostKeyName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function globMatch(pattern: string, name: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`, "i");
  return re.test(name);
}

/** Whether the entry's host field names `name` (already in `hostKeyName` form). */
export function entryMatches(entry: KnownHostEntry, name: string): boolean {
  if (entry.hashed) {
    const h = createHmac("sha1", entry.hashed.salt).update(name).digest();
    return timingSafeEqual(h, entry.hashed.hash);
  }
  let hit = false;
  for (const p of entry.patterns) {
    if (p.startsWith("!")) {
      if (globMatch(p.slice(1), name)) return false;
    } else if (globMatch(p, name)) hit = true;
  }
  return hit;
}

/** Key type from the SSH wire blob (its first string). */
export function blobKeyType(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const n = blob.readUInt32BE(0);
  if (n === 0 || n > 64 || blob.length < 4 + n) return undefined;
  return blob.subarray(4, 4 + n).toString("latin1");
}

export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/**
 * What known_hosts says about `key` offered by a host known under any of
 * `names`: known, revoked, changed (a key of the same type is recorded and
 * differs), or unknown.
 */
export function checkHostKey(entries: readonly KnownHostEntry[], names: readonly string[], key: Buffer): HostKeyVerdict {
  const type = blobKeyType(key);
  const mine = entries.filter((e) => e.marker !== "cert-authority" && names.some((n) => entryMatches(e, n)));
  const revoked = mine.find((e) => e.marker === "revoked" && e.key.equals(key));
  if (revoked) return { kind: "revoked", line: revoked.line };
  const same = mine.find((e) => e.marker === null && e.key.equals(key));
  if (same) return { kind: "known", line: same.line };
  const other = mine.find((e) => e.marker === null && e.keyType === type);
  if (other) return { kind: "changed", line: other.line, knownFingerprint: fingerprint(other.key), keyType: other.keyType };
  return { kind: "unknown" };
}

/** Key types recorded for these names, so the SSH handshake can ask for one of them first. */
export function knownKeyTypes(entries: readonly KnownHostEntry[], names: readonly string[]): string[] {
  return [...new Set(entries.filter((e) => e.marker === null && names.some((n) => entryMatches(e, n))).map((e) => e.keyType))];
}

/** A hashed known_hosts line for `name` (as OpenSSH writes with HashKnownHosts yes). */
export function formatKnownHost(name: string, key: Buffer, salt: Buffer = randomBytes(20)): string {
  const hash = createHmac("sha1", salt).update(name).digest();
  return `|1|${salt.toString("base64")}|${hash.toString("base64")} ${blobKeyType(key)} ${key.toString("base64")}`;
}

/** The file's entries; a missing file has none. */
export function readKnownHosts(file: string): { entries: KnownHostEntry[]; problems: { line: number; message: string }[] } {
  let text = "";
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  return parseKnownHosts(text);
}

/** Appends one hashed line (O_APPEND: lines from hosts bootstrapped in parallel do not interleave). */
export function appendKnownHost(file: string, name: string, key: Buffer): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  appendFileSync(file, formatKnownHost(name, key) + "\n", { mode: 0o600 });
}

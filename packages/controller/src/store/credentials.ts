import { randomBytes } from "node:crypto";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { DNS_LABEL } from "@netfleet/shared";
import { readJsonFile, writeSecretJson } from "./files.ts";

/** A host agent's NATS user and password, as stored (one JSON file per host). */
export interface StoredCredential {
  host: string;
  user: string;
  password: string;
  /** The X25519 key the agent enrolled with; welcomes are sealed to it. */
  agentKey: string;
  issuedAt: string;
}

/**
 * Agent passwords, one file per host (mode 0600) in a directory only the
 * controller reads. The server config holds the same passwords (it has no
 * hashing we could produce without bcrypt), and is 0600 too.
 *
 * What this store read or wrote is kept in memory: `all()` (every user
 * sync, which during a fleet's enrollment runs again and again) lists the
 * directory and reads only the files it does not hold yet, instead of every
 * file each time (10,000 reads per sync at 10,000 hosts, issue 18). Only
 * the serve process writes credentials (its state dir is locked); a file
 * changed behind its back is seen once it is removed or the process restarts.
 *
 * Spares (provision): a fresh user and password for each inventory host
 * that has no credential yet, held in this process's memory only (no file,
 * agentKey empty), listed by `all()` so that one user sync gives the
 * server all of them at once. Approving such a host then hands out its
 * spare (issueFromSpare: written as the host's credential, sealed to its
 * agent's key) with no server reload: at 10,000 hosts a reload takes
 * seconds and the enrollment waited for one per batch (issue 18). A spare's
 * password never leaves the controller before its host is approved (the
 * server's accounts file holds it, 0600, like every agent password); it is
 * handed out once, and revoke removes it. A restart forgets the spares:
 * the next sync drops their users.
 */
export class CredentialStore {
  readonly dir: string;
  private readonly held = new Map<string, StoredCredential>();
  private readonly spares = new Map<string, StoredCredential>();
  constructor(dir: string) {
    this.dir = dir;
  }

  /**
   * A spare credential (see the class) for each of `hosts` that has none, stored or spare; returns how many
   * were made. They reach the server with the next user sync (UserSync.sync), which the caller awaits
   * before handing one out.
   * @throws Error when a host is not a DNS label, or the directory cannot be read.
   */
  async provision(hosts: readonly { host: string; user: string }[]): Promise<number> {
    const have = new Set((await this.all()).map((c) => c.host));
    let made = 0;
    for (const { host, user } of hosts) {
      this.file(host);
      if (have.has(host)) continue;
      this.spares.set(host, { ...this.make(host, user, ""), issuedAt: "" });
      have.add(host);
      made++;
    }
    return made;
  }

  /**
   * Hands out the host's spare: its user and password with `agentKey`, stored as the host's credential
   * (save). Undefined when the host has no spare for `user` (then issue() and a user sync are needed). The
   * caller must have synced the spares to the server (provision).
   */
  async issueFromSpare(host: string, user: string, agentKey: string): Promise<StoredCredential | undefined> {
    const spare = this.spares.get(host);
    if (!spare || spare.user !== user) return undefined;
    const credential: StoredCredential = { ...spare, agentKey, issuedAt: new Date().toISOString() };
    await this.save(credential);
    return credential;
  }

  /** Forgets every spare (their users go with the next sync): when they could not be synced. */
  dropSpares(): void {
    this.spares.clear();
  }

  /** A new random password for the host (replacing any), written 0600 with a unique temp file and a rename. */
  async issue(host: string, user: string, agentKey: string): Promise<StoredCredential> {
    const credential = this.make(host, user, agentKey);
    await this.save(credential);
    return credential;
  }

  /** A new credential (random 24-byte password, base64url) for the host, not stored yet (see save). */
  make(host: string, user: string, agentKey: string): StoredCredential {
    return { host, user, password: randomBytes(24).toString("base64url"), agentKey, issuedAt: new Date().toISOString() };
  }

  /**
   * Stores a credential (replacing the host's), 0600, unique temp file and rename.
   * @throws Error when its host is not a DNS label or the file cannot be written.
   */
  async save(credential: StoredCredential): Promise<void> {
    await writeSecretJson(this.file(credential.host), credential);
    this.held.set(credential.host, credential);
    this.spares.delete(credential.host);
  }

  /**
   * The host's credential, if issued.
   * @throws Error when `host` is not a DNS label, or the file cannot be read or parsed.
   */
  async get(host: string): Promise<StoredCredential | undefined> {
    const file = this.file(host);
    const held = this.held.get(host);
    if (held) return held;
    const read = (await readJsonFile(file)) as StoredCredential | undefined;
    if (read) this.held.set(host, read);
    return read;
  }

  /** Every issued credential, by host name (files not named `<dns-label>.json` are ignored), and the spares of hosts without one (provision). */
  async all(): Promise<StoredCredential[]> {
    const names = await readdir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return [] as string[];
      throw err;
    });
    const hosts = names.filter((n) => n.endsWith(".json")).map((n) => n.slice(0, -5)).filter((h) => DNS_LABEL.test(h)).sort();
    // A file gone from the listing is gone from memory too.
    const listed = new Set(hosts);
    for (const h of [...this.held.keys()]) if (!listed.has(h)) this.held.delete(h);
    const out: StoredCredential[] = [];
    for (const h of hosts) {
      const c = await this.get(h);
      if (c) out.push(c);
    }
    if (this.spares.size === 0) return out;
    for (const [h, spare] of this.spares) if (!listed.has(h)) out.push(spare);
    return out.sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
  }

  /** Removes the host's credential and its spare (nothing when there is none). */
  async revoke(host: string): Promise<void> {
    const file = this.file(host);
    this.held.delete(host);
    this.spares.delete(host);
    await rm(file, { force: true });
  }

  private file(host: string): string {
    if (!DNS_LABEL.test(host)) throw new Error(`host ${JSON.stringify(host)} is not a DNS label`);
    return join(this.dir, `${host}.json`);
  }
}

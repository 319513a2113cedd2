import type { Msg } from "@nats-io/transport-node";
import {
  DecodeError,
  ENROLL_FACTS_MAX_BYTES,
  EnrollFacts,
  RekeyReply,
  decodeMessage,
  encodeMessage,
  parseHostToken,
  rekeyContext,
  rekeySubject,
  seal,
  type AdminRequest,
  type Rekey,
} from "@netfleet/shared";
import PQueue from "p-queue";
import { requestAgent } from "../nats/agent-request.ts";
import { HANDLER_RETRY_MS } from "../nats/host-messages.ts";
import { agentUserName } from "../nats/permissions.ts";
import type { StoredCredential } from "../store/credentials.ts";
import { isStoreHiccup, withRetry } from "../store/kv.ts";
import { ClaimsFullError, keyFingerprint, type HostRecord } from "../store/registry.ts";
import { hostTokenKey, verifyHostToken, type VerifiedHostToken } from "./host-tokens.ts";
import { hostIndex, matchHost, tokenMatches, type AcceptedToken } from "./match.ts";
import { DEFAULT_ENROLLMENT_LIMITS, RefusalLog, type EnrollmentLimits } from "./limits.ts";
import { KeyedTokenBuckets, TokenBucket } from "./rate-limit.ts";
import { HostNotFoundError, type EnrollmentServiceOptions } from "./options.ts";
import { Welcomes, welcomeContent } from "./welcome.ts";

export { DEFAULT_ENROLLMENT_LIMITS, type EnrollmentLimits } from "./limits.ts";
export { HostNotFoundError, type EnrollmentServiceOptions } from "./options.ts";

/**
 * Enroll messages handled at once (each is a few store requests and a sealed welcome); the rest wait their
 * turn. Without a bound, 2,000 agents enrolling side by side made as many store requests at once, and some
 * timed out (issue 18); an approval used to wait for a server reload, which hid this.
 */
export const ENROLL_PARALLEL = 64;

/**
 * Enrollment. An agent's enroll message (facts, its public key, a token)
 * is handled by the token it presents:
 * - a host token minted for this host (host-tokens.ts), valid, unexpired,
 *   unused, for an inventory host named exactly as the agent enrolls, that
 *   has no record yet: approved at once; the token's nonce is marked used
 *   (KV create) first, so a second use is refused;
 * - the site's join token: a pending claim at most (quarantined, kept in
 *   the claims bucket apart from the records, at most `maxClaims`),
 *   matched to an inventory host by hostname or management MAC, for an
 *   operator to approve (`netfleet hosts approve`);
 * - anything else: refused, nothing written.
 * No enroll message ever changes an approved record: the approved agent
 * asking again (same key) gets its welcome again, nothing more. Messages
 * over ENROLL_FACTS_MAX_BYTES are refused before parsing; each claimed
 * name and the site's claims are rate-limited. Every refusal is logged
 * (`enroll-refused`, with its reason; at most 20 a second, the rest counted).
 * Approving issues the host its own NATS user (written to the user
 * directory, the server reloaded) and sends it a welcome sealed to the
 * agent's key; rejecting and revoking remove that user, which closes the
 * agent's connection; rekeying hands the connected agent a new password.
 */
/**
 * What one enroll message's earlier attempts did (EnrollmentService.enrollStored, retried on a store hiccup):
 * the site's claim token taken, the credential issued, and whether the users were synced with it.
 */
interface EnrollAttempt {
  claimTaken?: boolean;
  credential?: StoredCredential;
  synced?: boolean;
}

export class EnrollmentService {
  private readonly o: EnrollmentServiceOptions;
  private readonly limits: EnrollmentLimits;
  private readonly perName: KeyedTokenBuckets;
  private readonly claimsPerSite: TokenBucket;
  private readonly unauthenticated: TokenBucket;
  private key: Promise<Buffer> | undefined;
  private tokens: { at: number; list: Promise<readonly AcceptedToken[]> } | undefined;
  private readonly refusals: RefusalLog;
  /** Enroll messages being handled (ENROLL_PARALLEL at once). */
  private readonly inFlight = new PQueue({ concurrency: ENROLL_PARALLEL });
  /** The spare users of the inventory's hosts, made and synced once (provisionSpares): true once the server has them. */
  private spares: Promise<boolean> | undefined;
  /** Welcomes sealed and sent, the last one per host kept (welcome.ts). */
  private readonly welcomes: Welcomes;

  constructor(options: EnrollmentServiceOptions) {
    this.o = options;
    this.limits = { ...DEFAULT_ENROLLMENT_LIMITS, ...options.limits };
    this.perName = new KeyedTokenBuckets(this.limits.perName);
    this.claimsPerSite = new TokenBucket(this.limits.claimsPerSite);
    this.unauthenticated = new TokenBucket(this.limits.unauthenticated);
    this.refusals = new RefusalLog(options.log);
    this.welcomes = new Welcomes(options);
  }

  /**
   * Handles one enrollment message (`nf.<site>.enroll.<host>`, EnrollFacts).
   * Refusals (rate, token, a used or foreign host token, claims full) are
   * logged and return normally.
   * @throws DecodeError for a message over ENROLL_FACTS_MAX_BYTES, facts that do not decode, name another
   *   site, or claim a host the subject does not name.
   */
  enroll(msg: Msg, subjectHost: string): Promise<void> {
    return this.inFlight.add(() => this.enrollNow(msg, subjectHost));
  }

  private async enrollNow(msg: Msg, subjectHost: string): Promise<void> {
    if (msg.data.length > ENROLL_FACTS_MAX_BYTES) {
      throw new DecodeError(msg.subject, "", `enroll message of ${msg.data.length} bytes is over the limit of ${ENROLL_FACTS_MAX_BYTES}`);
    }
    const { site } = this.o;
    // The spares are made while the first enrollments are checked, not when the first approval waits for them.
    void this.provisionSpares();
    // Parsing is bounded by the size check: a message that does not decode is refused (logged as bad-message) before any limit is spent.
    const facts = decodeMessage(EnrollFacts, msg.subject, msg.data);
    if (facts.site !== site) throw new DecodeError(msg.subject, "site", `facts are for site ${facts.site}`);
    const match = matchHost(facts, this.o.hosts);
    if (subjectHost !== facts.hostname && !(match.kind === "matched" && match.host === subjectHost)) {
      throw new DecodeError(msg.subject, "hostname", `published as ${subjectHost} but claims ${facts.hostname}`);
    }
    // A host token's MAC is checked first (one HMAC): a valid one is limited by its nonce, so a flood on its host's
    // name (anyone with the enrollment id can send one) cannot starve it. Everything else shares one site-wide
    // bucket first, then the name's.
    const hostToken = parseHostToken(facts.token) ? verifyHostToken(await this.hostTokenKey(), site, facts.token) : undefined;
    if (hostToken?.ok) {
      if (!this.perName.take(`nonce:${hostToken.token.nonce}`)) return this.refusals.refuse(subjectHost, "rate limit: too many enroll messages with this host token");
    } else {
      if (!this.unauthenticated.take()) return this.refusals.refuse(subjectHost, "rate limit: too many enrollments without a valid host token for the site");
      if (!this.perName.take(subjectHost)) return this.refusals.refuse(subjectHost, "rate limit: too many enroll messages for this name");
    }
    // From here on a store hiccup (a nats-server reload, a timeout: isStoreHiccup) is retried, for HANDLER_RETRY_MS:
    // the limits above are spent once per message, and what an attempt already did is kept in `attempt`.
    const attempt: EnrollAttempt = {};
    await withRetry(
      () => this.enrollStored(facts, match, hostToken, attempt),
      HANDLER_RETRY_MS,
      (err) => this.o.log({ event: "enroll-retry", host: subjectHost, error: err.message }),
      isStoreHiccup,
    );
  }

  /** enrollNow past its rate limits: the registry's reads and writes, retried as a whole on a store hiccup (`attempt`: see EnrollAttempt). */
  private async enrollStored(facts: EnrollFacts, match: ReturnType<typeof matchHost>, hostToken: ReturnType<typeof verifyHostToken> | undefined, attempt: EnrollAttempt): Promise<void> {
    const { registry } = this.o;
    const key = match.kind === "matched" ? match.host : facts.hostname;
    const current = await registry.get(key);
    if (current?.state === "approved" && current.approvedKey === facts.publicKey) {
      // The approved agent asking again (it missed its welcome, or announces itself after a start): its welcome is
      // sent again, sealed to its key; the record is not touched (the key is public: anyone may send this).
      const credential = await this.o.credentials.get(key);
      if (credential) this.welcomes.send(facts.hostname, credential);
      this.o.log({ event: "enroll", host: key, state: "approved", again: true });
      return;
    }
    const { token: _token, ...stored } = facts;
    const now = new Date().toISOString();
    if (hostToken) return hostToken.ok ? this.enrollWithHostToken(hostToken.token, stored, current, now, attempt) : this.refusals.refuse(facts.hostname, hostToken.reason);
    if (!tokenMatches(facts.token, await this.siteTokens())) return this.refusals.refuse(facts.hostname, "wrong enrollment token");
    // The site token: a pending claim, never an approval.
    if ((current?.state === "rejected" && current.claimKey === facts.publicKey) || current?.rejectedKeys?.includes(facts.publicKey)) {
      return this.refusals.refuse(key, "this agent key was rejected by an operator");
    }
    if (!attempt.claimTaken) {
      if (!this.claimsPerSite.take()) return this.refusals.refuse(facts.hostname, "rate limit: too many claims for the site");
      attempt.claimTaken = true;
    }
    const reason =
      match.kind === "conflict" ? match.reason
      : match.kind === "none" ? "no inventory host has this hostname or management MAC"
      : current?.state === "approved" ? "a new agent key claims this host (site token); approve it to hand the host over"
      : match.matchedBy === "mac" ? `claims ${key} by management MAC (site token); an operator must approve it`
      : "site token: waiting for an operator (or enroll with a host token: netfleet hosts token HOST)";
    const claim: HostRecord = {
      host: key,
      inventory: match.kind === "matched",
      state: "quarantined",
      reason,
      matchedBy: match.kind === "matched" ? match.matchedBy : null,
      facts: stored,
      claimKey: facts.publicKey,
      approvedKey: null,
      firstSeen: (await registry.claim(key))?.firstSeen ?? now,
      lastSeen: now,
      approvedAt: null,
    };
    try {
      await registry.putClaim(claim, this.limits.maxClaims);
    } catch (err) {
      if (err instanceof ClaimsFullError) return this.refusals.refuse(key, err.message);
      throw err;
    }
    this.o.log({ event: "enroll", host: key, claimed: facts.hostname, matchedBy: claim.matchedBy, state: "quarantined", reason });
  }

  private async enrollWithHostToken(t: VerifiedHostToken, facts: HostRecord["facts"], current: HostRecord | undefined, now: string, attempt: EnrollAttempt): Promise<void> {
    const { registry } = this.o;
    // Bound to the host name: not to a MAC, not to the subject alone.
    if (t.host !== facts.hostname) return this.refusals.refuse(facts.hostname, `host token is for ${t.host}, not ${facts.hostname}`);
    if (!hostIndex(this.o.hosts).byName.has(t.host)) return this.refusals.refuse(t.host, "host token for a host that is not in the inventory");
    if (current?.state === "approved") return this.refusals.refuse(t.host, "already approved with another agent key: a host token never replaces it (revoke the host first, then approve)");
    if (current?.state === "rejected") return this.refusals.refuse(t.host, "rejected or revoked by an operator: only netfleet hosts approve enrolls it again");
    // Single use: the first to create the nonce's key wins, on every server of the cluster (the same agent key may
    // come again after a failure half-way: registry.useToken).
    if (!(await registry.useToken(t.nonce, t.host, facts.publicKey))) return this.refusals.refuse(t.host, "host token already used");
    const from: HostRecord = {
      host: t.host,
      inventory: true,
      state: "quarantined",
      reason: "approving (host token)",
      matchedBy: "token",
      facts,
      claimKey: facts.publicKey,
      approvedKey: null,
      firstSeen: current?.firstSeen ?? now,
      lastSeen: now,
      approvedAt: null,
    };
    this.o.log({ event: "enroll", host: t.host, matchedBy: "token", state: "approving" });
    await this.grant(t.host, from, attempt);
  }

  /**
   * Runs an operator action (the admin RPC of `netfleet hosts approve|reject|revoke|rekey`).
   * @throws HostNotFoundError as the action does.
   */
  admin(action: AdminRequest["action"], host: string, options: { replaceKey?: string } = {}): Promise<HostRecord> {
    switch (action) {
      case "approve":
        return this.approve(host, options);
      case "reject":
        return this.reject(host);
      case "revoke":
        return this.revoke(host);
      case "rekey":
        return this.rekey(host);
    }
  }

  /**
   * Approves a host: its pending claim (or, with none, its quarantined or
   * rejected record's last claim) gets new credentials, sealed to the
   * claiming agent's key; the claim is removed. An approved host is handed
   * to another key only when `replaceKey` names that key's fingerprint
   * (keyFingerprint; `netfleet hosts` shows it): a careless approve never
   * gives a host to whoever claimed it with the site token.
   * @throws HostNotFoundError when the host has not enrolled, matches no inventory host, or is approved and
   *   `replaceKey` does not name the claim's key.
   */
  approve(host: string, options: { replaceKey?: string } = {}): Promise<HostRecord> {
    return this.o.queues.run(host, async () => {
      const claim = await this.o.registry.claim(host);
      const record = await this.o.registry.get(host);
      const from = claim ?? record;
      if (!from) throw new HostNotFoundError(host, "has not enrolled");
      if (!from.inventory) throw new HostNotFoundError(host, "matches no inventory host (by hostname or management MAC); add it to the inventory first");
      if (record?.state === "approved" && from.claimKey !== record.approvedKey) {
        const fp = keyFingerprint(from.claimKey);
        if (options.replaceKey !== fp) {
          throw new HostNotFoundError(host, `is approved; the pending claim is by another agent key ${fp}: approve --replace-key ${fp} hands the host to it (the approved agent loses its credentials), reject drops the claim`);
        }
      }
      return this.grant(host, from);
    });
  }

  /**
   * Refuses a claim or a host. On an approved host it refuses only the
   * pending claim: the claim is removed and its key recorded in the
   * record's `rejectedKeys` (its later claims are refused); the approved
   * agent, its credentials and its connection stay (`revoke` withdraws an
   * approved host). On any other host: its credentials are revoked, its
   * pending claim removed, its record kept as `rejected`.
   * @throws HostNotFoundError when the host has not enrolled, or is approved with no pending claim.
   */
  reject(host: string): Promise<HostRecord> {
    return this.o.queues.run(host, async () => {
      const { registry } = this.o;
      const record = await registry.get(host);
      if (record?.state !== "approved") return this.withdraw(host, "rejected by operator", false);
      const claim = await registry.claim(host);
      if (!claim) throw new HostNotFoundError(host, "is approved and has no pending claim (to withdraw the host itself: netfleet hosts revoke)");
      await registry.removeClaim(host);
      const next = await registry.mutate(host, (cur) => cur && { ...cur, rejectedKeys: [...(cur.rejectedKeys ?? []).filter((k) => k !== claim.claimKey), claim.claimKey].slice(-16) });
      this.o.log({ event: "claim-rejected", host, key: keyFingerprint(claim.claimKey) });
      return next!;
    });
  }

  /**
   * Revokes an approved host: its NATS user is removed and the servers
   * reloaded (nats-server closes the connections of a user it no longer
   * has), any pending claim removed, the record `rejected` with `revokedAt`.
   * It enrolls again only by an operator's approve.
   * @throws HostNotFoundError when the host is not approved.
   */
  revoke(host: string): Promise<HostRecord> {
    return this.o.queues.run(host, () => this.withdraw(host, "credentials revoked by operator", true));
  }

  /**
   * New NATS credentials for an approved host whose agent is connected: a
   * new password is sealed to the agent's key and sent as a request to its
   * inbox (Rekey); once the agent answers that it keeps them, the password is
   * stored and the servers reloaded, so the old one is refused from then on.
   * @throws HostNotFoundError when the host is not approved; Error when the agent does not answer within rekeyTimeoutMs
   *   or refuses (nothing changed then).
   */
  rekey(host: string): Promise<HostRecord> {
    return this.o.queues.run(host, async () => {
      const { site, registry, credentials } = this.o;
      const record = await registry.get(host);
      const old = await credentials.get(host);
      if (record?.state !== "approved" || !record.approvedKey || !old) throw new HostNotFoundError(host, "is not approved");
      const next = credentials.make(host, old.user, record.approvedKey);
      const box = seal(record.approvedKey, new TextDecoder().decode(encodeMessage(welcomeContent(this.o, next))), rekeyContext(site, host));
      const request: Rekey = { kind: "rekey", site, host, ...box };
      let reply: RekeyReply;
      try {
        const msg = await requestAgent(this.o.nc, site, host, rekeySubject(site, host), encodeMessage(request), this.limits.rekeyTimeoutMs);
        reply = decodeMessage(RekeyReply, "rekey reply", msg.data);
      } catch (err) {
        throw new Error(`${host}: the agent did not take new credentials (${(err as Error).message}); nothing changed (is it connected?)`, { cause: err });
      }
      if (!reply.ok) throw new Error(`${host}: the agent refused new credentials: ${reply.error ?? "no reason"}; nothing changed`);
      await credentials.save(next);
      await this.o.users.sync();
      this.o.log({ event: "rekeyed", host });
      return (await registry.get(host))!;
    });
  }

  private async withdraw(host: string, reason: string, revoke: boolean): Promise<HostRecord> {
    const { registry } = this.o;
    const record = await registry.get(host);
    const claim = await registry.claim(host);
    if (revoke ? record?.state !== "approved" : !record && !claim) throw new HostNotFoundError(host, revoke ? "is not approved" : "has not enrolled");
    await this.o.credentials.revoke(host);
    await this.o.users.sync();
    const now = new Date().toISOString();
    const base = (record ?? claim)!;
    const next = await registry.mutate(host, (cur) => ({ ...(cur ?? base), state: "rejected", reason, approvedKey: null, approvedAt: null, revokedAt: now }));
    if (claim) await registry.removeClaim(host);
    this.o.log({ event: revoke ? "revoked" : "rejected", host });
    return next!;
  }

  /**
   * Once per service, on the first enrollment: a spare NATS user for every inventory host without
   * credentials (CredentialStore.provision), given to the server in one user sync. An approval then hands
   * out its host's spare without a reload of its own: enrolling 10,000 hosts waited for one reload per
   * batch of approvals, seconds each at that size (issue 18). False when that sync failed: the spares are
   * dropped and each approval issues and syncs as before.
   */
  private provisionSpares(): Promise<boolean> {
    this.spares ??= (async () => {
      const { site, hosts, credentials, users } = this.o;
      const made = await credentials.provision(hosts.map((h) => ({ host: h.name, user: agentUserName(site, h.name) })));
      if (made > 0) await users.sync();
      this.o.log({ event: "spare-users", hosts: made });
      return true;
    })().catch((err: unknown) => {
      this.o.credentials.dropSpares();
      this.o.log({ event: "spare-users-failed", error: (err as Error).message });
      return false;
    });
    return this.spares;
  }

  /**
   * Issues credentials to `from.claimKey` (the host's spare when it has one: no reload; else new ones and a
   * user sync), writes the approved record, removes any claim, sends the welcome. `attempt` (an enrollment
   * retried after a store hiccup): the credential an earlier attempt issued is handed out again, not a new one
   * with one more reload, and the users are synced again only when that attempt's sync did not complete.
   */
  private async grant(host: string, from: HostRecord, attempt: EnrollAttempt = {}): Promise<HostRecord> {
    const { registry, credentials } = this.o;
    const user = agentUserName(this.o.site, host);
    let credential = attempt.credential?.agentKey === from.claimKey ? attempt.credential : undefined;
    if (!credential) {
      const spare = (await this.provisionSpares()) ? await credentials.issueFromSpare(host, user, from.claimKey) : undefined;
      credential = spare ?? (await credentials.issue(host, user, from.claimKey));
      attempt.credential = credential;
      // A spare is on the server already (provisionSpares synced it).
      attempt.synced = spare !== undefined;
    }
    if (!attempt.synced) {
      await this.o.users.sync();
      attempt.synced = true;
    }
    const approved = await registry.mutate(host, (cur) => ({
      ...from,
      host,
      inventory: true,
      firstSeen: cur?.firstSeen ?? from.firstSeen,
      state: "approved",
      reason: null,
      approvedKey: credential.agentKey,
      approvedAt: new Date().toISOString(),
      revokedAt: cur?.revokedAt ?? null,
    }));
    await registry.removeClaim(host);
    this.welcomes.send(from.facts.hostname, credential);
    this.o.log({ event: "approved", host, matchedBy: from.matchedBy });
    return approved!;
  }

  /** The accepted site tokens; a function source is read at most once a second (a failed read: the last list). */
  private async siteTokens(): Promise<string | readonly AcceptedToken[]> {
    const source = this.o.enrollmentToken;
    if (typeof source !== "function") return source;
    if (!this.tokens || Date.now() - this.tokens.at >= 1000) {
      const previous = this.tokens;
      this.tokens = { at: Date.now(), list: source().catch((err: unknown) => {
        this.o.log({ event: "enrollment-tokens-unreadable", error: (err as Error).message });
        return previous ? previous.list : [];
      }) };
    }
    return this.tokens.list;
  }

  private hostTokenKey(): Promise<Buffer> {
    this.key ??= hostTokenKey(this.o.credentials.dir).catch((err: unknown) => {
      this.key = undefined;
      throw err;
    });
    return this.key;
  }
}

import type { Msg, NatsConnection } from "@nats-io/transport-node";
import {
  DecodeError,
  EnrollFacts,
  agentInboxPrefix,
  decodeMessage,
  encodeMessage,
  seal,
  welcomeContext,
  welcomeSubject,
  type AgentCredentials,
  type Host,
  type SigningKeys,
  type Welcome,
} from "@netfleet/shared";
import type { HostQueues } from "../nats/host-messages.ts";
import { agentUserName } from "../nats/permissions.ts";
import type { CredentialStore, StoredCredential } from "../store/credentials.ts";
import type { HostRecord, HostRegistry } from "../store/registry.ts";
import { matchHost, tokenMatches } from "./match.ts";
import type { UserSync } from "./users.ts";

/** An operator action named a host the registry cannot act on (not enrolled, or not in the inventory). */
export class HostNotFoundError extends Error {
  readonly host: string;
  constructor(host: string, detail: string) {
    super(`${host}: ${detail}`);
    this.name = "HostNotFoundError";
    this.host = host;
  }
}

/** What the enrollment service works with. */
export interface EnrollmentServiceOptions {
  nc: NatsConnection;
  site: string;
  /** Inventory hosts: enrolling agents are matched against them. */
  hosts: readonly Host[];
  /** The site enrollment token an agent must present in its facts to be approved without an operator. */
  enrollmentToken: string;
  /** The key id and public key handed to agents in their welcome (the private key signs assignments elsewhere). */
  signing: SigningKeys;
  registry: HostRegistry;
  credentials: CredentialStore;
  users: UserSync;
  /** The per-host queue enrollment messages are handled in: approve and reject take their turn in it. */
  queues: HostQueues;
  log: (event: Record<string, unknown>) => void;
}

/**
 * Enrollment: an agent's facts are matched to an inventory host (by
 * hostname or management MAC) and recorded in the registry; with the site
 * token it is approved at once, otherwise quarantined for an operator.
 * Approving issues the host its own NATS user (written to the user
 * directory) and sends it a welcome sealed to the agent's key; rejecting
 * revokes that user.
 */
export class EnrollmentService {
  private readonly o: EnrollmentServiceOptions;

  constructor(options: EnrollmentServiceOptions) {
    this.o = options;
  }

  /**
   * Handles one enrollment message (`nf.<site>.enroll.<host>`, EnrollFacts).
   * @throws DecodeError for facts that do not decode, name another site, or claim a host the subject does not name.
   */
  async enroll(msg: Msg, subjectHost: string): Promise<void> {
    const { site, registry } = this.o;
    const facts = decodeMessage(EnrollFacts, msg.subject, msg.data);
    if (facts.site !== site) throw new DecodeError(msg.subject, "site", `facts are for site ${facts.site}`);
    const match = matchHost(facts, this.o.hosts);
    if (subjectHost !== facts.hostname && !(match.kind === "matched" && match.host === subjectHost)) {
      throw new DecodeError(msg.subject, "hostname", `published as ${subjectHost} but claims ${facts.hostname}`);
    }
    const tokenOk = tokenMatches(facts.token, this.o.enrollmentToken);
    const key = match.kind === "matched" ? match.host : facts.hostname;
    const { token: _token, ...stored } = facts;
    const now = new Date().toISOString();
    const current = await registry.get(key);
    const base = {
      host: key,
      inventory: match.kind === "matched",
      matchedBy: match.kind === "matched" ? match.matchedBy : null,
      facts: stored,
      claimKey: facts.publicKey,
      lastSeen: now,
      firstSeen: current?.firstSeen ?? now,
    };

    if (current?.state === "approved") {
      const sameAgent = current.approvedKey === facts.publicKey;
      // A claim by another key (anyone holding the join token's id can send one) is recorded as a claim only:
      // the facts, match and last-seen time stay those the approved agent reported.
      await registry.mutate(key, (cur) =>
        cur && (sameAgent
          ? { ...cur, ...base, reason: null }
          : { ...cur, claimKey: facts.publicKey, reason: "a new agent key claims this host; approve it to hand the host over" }),
      );
      this.o.log({ event: "enroll", host: key, state: "approved", again: true, sameAgent });
      // An agent that missed its welcome asks again with the same key.
      if (sameAgent) {
        const credential = await this.o.credentials.get(key);
        if (credential) this.sendWelcome(facts.hostname, credential);
      }
      return;
    }
    if (current?.state === "rejected") {
      await registry.mutate(key, (cur) => cur && { ...cur, ...base });
      this.o.log({ event: "enroll", host: key, state: "rejected" });
      return;
    }
    const reason =
      match.kind === "conflict" ? match.reason
      : match.kind === "none" ? "no inventory host has this hostname or management MAC"
      : tokenOk ? null
      : "wrong enrollment token";
    await registry.mutate(key, (cur) => ({ ...base, state: "quarantined", reason: reason ?? "approving", approvedKey: null, approvedAt: null, firstSeen: cur?.firstSeen ?? now }));
    this.o.log({ event: "enroll", host: key, claimed: facts.hostname, matchedBy: base.matchedBy, state: reason ? "quarantined" : "approving", reason });
    if (reason === null) await this.grant(key);
  }

  /**
   * Approves a host (quarantined, or with a pending claim by a new agent key): new credentials, sealed to the claiming agent.
   * @throws HostNotFoundError when the host has not enrolled or matches no inventory host.
   */
  approve(host: string): Promise<HostRecord> {
    return this.o.queues.run(host, async () => {
      const record = await this.o.registry.get(host);
      if (!record) throw new HostNotFoundError(host, "has not enrolled");
      if (!record.inventory) throw new HostNotFoundError(host, "matches no inventory host (by hostname or management MAC); add it to the inventory first");
      return this.grant(host);
    });
  }

  /**
   * Refuses a host: its credentials are revoked at once (the server drops its connection on reload).
   * @throws HostNotFoundError when the host has not enrolled.
   */
  reject(host: string): Promise<HostRecord> {
    return this.o.queues.run(host, async () => {
      const { registry } = this.o;
      if (!(await registry.get(host))) throw new HostNotFoundError(host, "has not enrolled");
      await this.o.credentials.revoke(host);
      await this.o.users.sync();
      const record = await registry.mutate(host, (cur) => cur && { ...cur, state: "rejected", reason: "rejected by operator", approvedKey: null, approvedAt: null });
      this.o.log({ event: "rejected", host });
      return record!;
    });
  }

  private async grant(host: string): Promise<HostRecord> {
    const { registry } = this.o;
    const record = await registry.get(host);
    if (!record) throw new HostNotFoundError(host, "has not enrolled");
    const credential = await this.o.credentials.issue(host, agentUserName(this.o.site, host), record.claimKey);
    await this.o.users.sync();
    const approved = await registry.mutate(host, (cur) => cur && {
      ...cur,
      state: "approved",
      reason: null,
      approvedKey: credential.agentKey,
      approvedAt: new Date().toISOString(),
    });
    this.sendWelcome(record.facts.hostname, credential);
    this.o.log({ event: "approved", host, matchedBy: record.matchedBy });
    return approved!;
  }

  private sendWelcome(claimedName: string, credential: StoredCredential): void {
    const { site, signing } = this.o;
    const content: AgentCredentials = {
      site,
      host: credential.host,
      user: credential.user,
      password: credential.password,
      inboxPrefix: agentInboxPrefix(site, credential.host),
      signingKey: { keyId: signing.keyId, publicKeyPem: signing.publicKeyPem },
    };
    // Sealed as the wire encoding (with its protocol version), so the agent decodes it like any message.
    const box = seal(credential.agentKey, new TextDecoder().decode(encodeMessage(content)), welcomeContext(site, claimedName));
    const welcome: Welcome = { kind: "welcome", site, hostname: claimedName, ...box };
    this.o.nc.publish(welcomeSubject(site, claimedName), encodeMessage(welcome));
  }
}

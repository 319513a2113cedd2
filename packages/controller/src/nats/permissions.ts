import {
  agentInboxPrefix,
  agentReplySubject,
  agentUpgradePermissions,
  appliedBucket,
  auditSubject,
  checkSubject,
  correctiveBucket,
  desiredBucket,
  desiredStoredSubject,
  directGetSubject,
  enrollSubject,
  heartbeatSubject,
  hostKey,
  kvSubject,
  leasesBucket,
  reportSubject,
  SIGNING_CHAIN_KEY,
  showSubject,
  welcomeSubject,
} from "@netfleet/shared";
import type { NatsUser } from "./config.ts";

/**
 * Least privilege on nats-server 2.9 (static users, no auth callout).
 * An agent names only its own subjects and keys. It never gets any
 * `$JS.API.CONSUMER.*` or `$JS.API.STREAM.*` subject: on 2.9 a consumer's
 * filter is not checked against subscribe permissions, so reading happens
 * through a core subscription on its own `$KV` subject plus a direct get
 * whose subject names its own key; for the desired bucket, the controller's
 * word of what was stored there, with the bytes (`nf.<site>.stored.<host>`,
 * shared desiredStoredSubject), which only the controller may publish, and
 * which is all this release's agent follows (its key's `$KV` subject stays
 * allowed for agents before the word's body, which follow that instead).
 *
 * Gateway audit: a backend (`audit: true`, the inventory role) may publish
 * its own audit batches, `nf.<site>.audit.<host>.*` (any network, its host
 * token only); a VM host may not publish any. No agent may read them: the
 * audit stream is reached through the JetStream API alone, which no agent
 * has, and no agent may subscribe to `nf.<site>.audit.>`.
 *
 * One bucket is shared for reading: leases (`nf_<site>_leases`). An agent
 * writes only its own key there (a backend publishes the leases its dnsmasq
 * handed out) and may read every key, the same way: a core subscription on
 * `$KV.<leases>.*` and a direct get whose subject names a key (`*`: any
 * key, its own included). Both wildcards stay inside that bucket's subjects
 * (2.9 matches a subscription's `>` token literally against `*`, so
 * `$KV.<leases>.>` is accepted too: it sees that bucket only). The bucket's
 * stream refuses `Nats-Rollup` headers (ControlPlane), or a put to one's own
 * key could delete every other key.
 *
 * The corrective bucket (`nf_<site>_corrective`) is like applied: an agent
 * writes and reads back its own key only (the controller reads them all for
 * `netfleet status`), and it refuses rollups too.
 *
 * Also: a direct get of the signed signing-key chain (`_signing` of the
 * desired bucket, read only; not a DNS label, so no host is named so); its
 * upgrade subjects (agentUpgradePermissions: its own `want`/`run` keys, the
 * bundle store's direct gets). `netfleet hosts rekey` reaches the agent on
 * its own inbox (`<inbox>.rekey`), which it may already subscribe to.
 *
 * Requests to the agent (it subscribes, the controller publishes; no agent
 * may publish to either): check mode on `nf.<site>.check.<host>` and
 * `netfleet show` on `nf.<site>.show.<host>`, its own host's only. It answers
 * them, and rekeys, on `nf.<site>.reply.<host>.<id>` (agentReplySubject; the
 * controller's agent-request.ts), and may publish to no inbox: there is no
 * `allow_responses`. With it, an agent could answer anything it hears that
 * carries a reply subject, and it hears the controller's JetStream publish of
 * its own desired key: its answer could stand in for the stream's
 * acknowledgement (test/nats/reply-forgery.test.ts).
 */
export function agentUser(site: string, host: string, password: string, options: { audit?: boolean } = {}): NatsUser {
  const desired = desiredBucket(site);
  const applied = appliedBucket(site);
  const leases = leasesBucket(site);
  const corrective = correctiveBucket(site);
  const key = hostKey(host);
  // Agent upgrades (shared agent-upgrade.ts): read its signed target and the bundle object store, write its running-version report.
  const upgrade = agentUpgradePermissions(site, host);
  return {
    user: agentUserName(site, host),
    password,
    permissions: {
      publish: {
        allow: [
          ...upgrade.publish,
          enrollSubject(site, host),
          reportSubject(site, host),
          heartbeatSubject(site, host),
          // Its answers to the controller's requests (check, show, rekey): its own host's reply subjects, and no inbox.
          agentReplySubject(site, host, "*"),
          directGetSubject(desired, key),
          // The signed signing-key chain (keys rotation): read only; not a DNS label, so no host is named so.
          directGetSubject(desired, SIGNING_CHAIN_KEY),
          kvSubject(applied, key),
          directGetSubject(applied, key),
          kvSubject(corrective, key),
          directGetSubject(corrective, key),
          kvSubject(leases, key),
          // Direct get of any key of the leases bucket, its own included.
          directGetSubject(leases, "*"),
          ...(options.audit ? [auditSubject(site, host, "*")] : []),
        ],
      },
      subscribe: {
        allow: [
          ...upgrade.subscribe,
          `${agentInboxPrefix(site, host)}.>`,
          // Writes to its desired key as they come (what agents before the word's body follow), and the controller's word
          // that the bucket stored one, with the bytes (desired.ts watchDesired).
          kvSubject(desired, key),
          desiredStoredSubject(site, host),
          checkSubject(site, host),
          showSubject(site, host),
          kvSubject(leases, "*"),
        ],
      },
    },
  };
}

/** The NATS user name of a host's agent: `agent-<site>-<host>`. */
export function agentUserName(site: string, host: string): string {
  return `agent-${site}-${host}`;
}

/**
 * Shared by every host that has not enrolled yet: it may publish facts and
 * hear welcomes, which are sealed to each agent's own key.
 */
export function enrollmentUser(site: string, password: string): NatsUser {
  return {
    user: `enroll-${site}`,
    password,
    permissions: {
      publish: { allow: [enrollSubject(site, "*")] },
      subscribe: { allow: [welcomeSubject(site, "*")] },
    },
  };
}

/** The controller: the whole netfleet account. */
export function controllerUser(user: string, password: string): NatsUser {
  return { user, password };
}

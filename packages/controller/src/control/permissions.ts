import {
  agentInboxPrefix,
  appliedBucket,
  checkSubject,
  desiredBucket,
  directGetSubject,
  enrollSubject,
  heartbeatSubject,
  hostKey,
  kvSubject,
  reportSubject,
  welcomeSubject,
} from "@netfleet/shared";
import type { NatsUser } from "./nats-config.ts";

/**
 * Least privilege on nats-server 2.9 (static users, no auth callout).
 * An agent names only its own subjects and keys. It never gets any
 * `$JS.API.CONSUMER.*` or `$JS.API.STREAM.*` subject: on 2.9 a consumer's
 * filter is not checked against subscribe permissions, so reading happens
 * through a core subscription on its own `$KV` subject plus a direct get
 * whose subject names its own key.
 */
export function agentUser(site: string, host: string, password: string): NatsUser {
  const desired = desiredBucket(site);
  const applied = appliedBucket(site);
  const key = hostKey(host);
  return {
    user: agentUserName(site, host),
    password,
    permissions: {
      publish: {
        allow: [
          enrollSubject(site, host),
          reportSubject(site, host),
          heartbeatSubject(site, host),
          directGetSubject(desired, key),
          kvSubject(applied, key),
          directGetSubject(applied, key),
        ],
      },
      subscribe: { allow: [`${agentInboxPrefix(site, host)}.>`, kvSubject(desired, key), checkSubject(site, host)] },
      // Check-mode replies go to the controller's inbox: one reply per request received, within a minute.
      allow_responses: { max: 1, expires: "1m" },
    },
  };
}

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

/**
 * nats-server 2.9 configuration, rendered by us. Values are written as JSON
 * strings and numbers, which the server's config syntax accepts as is, so no
 * name or password can break out of its field.
 */

/** Subjects a user may (allow) or may not (deny) publish or subscribe to; NATS wildcards `*` and `>`. */
export interface SubjectPermission {
  allow?: string[];
  deny?: string[];
}

/** A static user of the netfleet account; no `permissions` means everything in the account. */
export interface NatsUser {
  user: string;
  password: string;
  permissions?: {
    publish?: SubjectPermission;
    subscribe?: SubjectPermission;
    /** May answer requests it received (one reply each, to the requester's reply subject). */
    allow_responses?: boolean | { max: number; expires: string };
  };
}

/** One nats-server node: its name, listen and monitoring ports, JetStream store, and cluster routes for 3 nodes. */
export interface NatsNodeConfig {
  name: string;
  /** Client listen address and port. */
  host: string;
  port: number;
  /** Monitoring (health, jsz, varz): always on loopback. */
  monitorPort: number;
  storeDir: string;
  pidFile: string;
  /** The file holding the accounts block, included by every node; relative to this node's config file (the server joins include paths to it). */
  accountsFile: string;
  /** server_tags: shown in /varz; NatsServer puts a random one per start there to tell its own child from another server on the port. */
  tags?: string[];
  cluster?: { name: string; host: string; port: number; routes: string[]; user: string; password: string };
  /**
   * nats-server's Go profiler (`prof_port`: net/http/pprof on the client listen host, `host`; pprof's
   * `/debug/pprof/profile?seconds=N` gives a CPU profile, test/bench/pprof.ts reads it). Absent: off, as
   * on a site. For measuring only: the endpoints answer anyone who reaches the port.
   */
  profPort?: number;
}

/** The one account every netfleet user is in (JetStream enabled). */
const NETFLEET_ACCOUNT = "NETFLEET";

/**
 * How long a client has, from its TCP connection, to send its CONNECT (user and password), in
 * seconds: nats-server's `authorization { timeout }` (docs.nats.io, server config, authorization;
 * default 2 s without TLS, hot reloadable). A client later than that is closed with
 * "Authentication Timeout", and nats.js stops reconnecting after two identical auth errors in a
 * row (nats-core protocol.js handleAuthError): thousands of agents reconnecting at once after a
 * server restart, or connecting after their welcome, missed 2 s on a busy 2-core machine (bench
 * restart.ts at 5,000 agents: 43,321 lost connections, 2,996 agents gone for good), each one then
 * setting up a new connection. A password check takes no longer for a late client: waiting longer
 * only keeps an idle socket open a while, which max_connections bounds anyway.
 */
export const AUTH_TIMEOUT_S = 10;

/** The node's config file text (it includes the shared accounts file). */
export function renderNodeConfig(node: NatsNodeConfig): string {
  const q = (s: string) => JSON.stringify(s);
  const lines = [
    `server_name: ${q(node.name)}`,
    `listen: ${q(`${node.host}:${node.port}`)}`,
    `http: ${q(`127.0.0.1:${node.monitorPort}`)}`,
    `pid_file: ${q(node.pidFile)}`,
    ...(node.tags?.length ? [`server_tags: [${node.tags.map(q).join(", ")}]`] : []),
    // Only the timeout: the users are in the accounts block (nats-server 2.9 accepts both).
    `authorization { timeout: ${AUTH_TIMEOUT_S} }`,
    `jetstream {`,
    `  store_dir: ${q(node.storeDir)}`,
    `  max_memory_store: 268435456`,
    `  max_file_store: 1073741824`,
    `}`,
  ];
  if (node.cluster) {
    const c = node.cluster;
    lines.push(
      `cluster {`,
      `  name: ${q(c.name)}`,
      `  listen: ${q(`${c.host}:${c.port}`)}`,
      `  authorization { user: ${q(c.user)}, password: ${q(c.password)} }`,
      `  routes: [${c.routes.map(q).join(", ")}]`,
      `}`,
    );
  }
  if (node.profPort !== undefined) lines.push(`prof_port: ${node.profPort}`);
  lines.push(`include ${q(node.accountsFile)}`, "");
  return lines.join("\n");
}

/** The accounts block: one JetStream-enabled account holding every user. */
export function renderAccounts(users: readonly NatsUser[]): string {
  const rendered = users.map((u) => {
    const entry: Record<string, unknown> = { user: u.user, password: u.password };
    if (u.permissions) entry.permissions = u.permissions;
    return `      ${JSON.stringify(entry)}`;
  });
  return [`accounts {`, `  ${NETFLEET_ACCOUNT} {`, `    jetstream: enabled`, `    users: [`, rendered.join(",\n"), `    ]`, `  }`, `}`, ""].join("\n");
}

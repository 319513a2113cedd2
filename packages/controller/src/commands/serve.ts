import { isIPv6 } from "node:net";
import { resolve } from "node:path";
import { isIpv4, isNatsUrl, type Inventory } from "@netfleet/shared";
import type { ControlPlane } from "../control-plane.ts";
import { NatsServer } from "../nats/server.ts";
import { ControllerHome } from "../store/home.ts";
import { CredentialStore } from "../store/credentials.ts";
import { UserSync } from "../enrollment/users.ts";
import type { CommandOutput } from "../output.ts";
import { connectController } from "./connect.ts";

/** What `netfleet serve` was asked: the state dir and where its NATS runs. */
export interface ServeOptions {
  stateDir: string;
  /** Run nats-server ourselves (default), listening here. */
  listen?: { host: string; port: number };
  nodes: 1 | 3;
  /** Use servers someone else runs: no approvals that change NATS users then. */
  external?: string[];
}

/** host:port of the first site.nats URL: where serve's own nats-server listens unless --listen says otherwise. */
function defaultListen(inventory: Inventory): { host: string; port: number } {
  const first = inventory.site.nats[0];
  if (first === undefined || !isNatsUrl(first)) return { host: "127.0.0.1", port: 4222 };
  const url = new URL(first);
  return { host: url.hostname, port: Number(url.port) };
}

/**
 * Parses `--listen ADDRESS:PORT` (IPv4 address, `localhost` or a bracketed IPv6 address; port 1-65000).
 * @throws Error naming the expected form.
 */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(.+):(\d{1,5})$/.exec(text.trim());
  const host = m?.[1] ?? "";
  const port = Number(m?.[2]);
  const hostOk = host.toLowerCase() === "localhost" || isIpv4(host) || (host.startsWith("[") && host.endsWith("]") && isIPv6(host.slice(1, -1)));
  if (!m || !hostOk || port < 1 || port > 65000) throw new Error(`--listen takes ADDRESS:PORT (e.g. 127.0.0.1:4222), not ${JSON.stringify(text)}`);
  return { host, port };
}

/**
 * `netfleet serve`: the long-lived controller service. Starts nats-server
 * (JetStream; 1 node, or a 3-node cluster on ports P, P+1, P+2), answers
 * enrollments (token → approved with its own NATS user; otherwise
 * quarantined), records heartbeats, and serves `netfleet hosts
 * approve|reject`. Runs until SIGTERM/SIGINT, then stops its nats-server.
 */
export async function serveCommand(inventory: Inventory, o: ServeOptions, out: CommandOutput, until?: Promise<void>): Promise<number> {
  const log = (event: Record<string, unknown>) => out.line(JSON.stringify({ ts: new Date().toISOString(), ...event }));
  const home = new ControllerHome(o.stateDir);
  const secrets = await home.secrets(inventory.site.name);
  let server: NatsServer | undefined;
  let cp: ControlPlane | undefined;
  try {
    if (!o.external) {
      const listen = o.listen ?? defaultListen(inventory);
      // The users the service will keep in sync, from the start: agents approved before reconnect at once.
      const credentials = new CredentialStore(home.credentialsDir);
      const users = await new UserSync({ site: secrets.site, controller: secrets.controller, enrollmentPassword: secrets.enrollment.enrollPassword, hosts: inventory.hosts, credentials }).users();
      server = await NatsServer.start({
        dir: home.natsDir,
        nodes: o.nodes,
        host: listen.host,
        basePort: listen.port,
        users,
      });
      log({ event: "nats-started", urls: server.urls, nodes: o.nodes, dir: home.natsDir });
    }
    const servers = server?.urls ?? o.external!;
    ({ cp } = await connectController({ stateDir: o.stateDir, inventory, servers, replicas: o.nodes, ...(server ? { userDirectory: server } : {}), log }));
    await cp.serve();
    await home.saveConfig({ site: secrets.site, inventory: resolve(inventory.dir), nats: servers, replicas: o.nodes, pid: process.pid, startedAt: new Date().toISOString() });
    log({ event: "ready", site: secrets.site, nats: servers, stateDir: o.stateDir, joinToken: `netfleet token --state-dir ${o.stateDir}` });
    await (until ??
      new Promise<void>((resolve) => {
        process.once("SIGTERM", () => resolve());
        process.once("SIGINT", () => resolve());
      }));
    log({ event: "stopping" });
    return 0;
  } finally {
    await cp?.close().catch(() => {});
    await server?.stop();
  }
}

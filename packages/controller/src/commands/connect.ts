import { resolve } from "node:path";
import { loadInventory, parseNatsUrls, type Inventory } from "@netfleet/shared";
import { ControlPlane, type ControlPlaneOptions } from "../control-plane.ts";
import type { UserDirectory } from "../enrollment/users.ts";
import { acceptedEnrollmentTokens, ControllerHome } from "../store/home.ts";

/** Where the controller keeps its state when neither --state-dir nor $NETFLEET_STATE_DIR says. */
const DEFAULT_STATE_DIR = "/var/lib/netfleet";

/** --state-dir, else $NETFLEET_STATE_DIR, else /var/lib/netfleet. */
export function stateDirOf(flag: string | undefined): string {
  return resolve(flag ?? process.env.NETFLEET_STATE_DIR ?? DEFAULT_STATE_DIR);
}

/**
 * Parses `--nats URL[,URL...]` with the shared NATS URL check.
 * @throws Error starting with `--nats` that names the bad URL (or the expected form).
 */
export function parseServers(text: string): string[] {
  try {
    return parseNatsUrls(text);
  } catch (err) {
    throw new Error(`--nats ${(err as Error).message}`);
  }
}

/** How long a command's first dial of each NATS server may take before it counts as not answering (nats.js `timeout`). */
export const DIAL_TIMEOUT_MS = 3_000;

/**
 * The controller's NATS could not be reached or refused the controller: the message names the URLs
 * tried, where they came from, the reason, and what to do.
 */
export class ControllerConnectError extends Error {
  readonly servers: readonly string[];
  constructor(message: string, servers: readonly string[], options?: ErrorOptions) {
    super(message, options);
    this.name = "ControllerConnectError";
    this.servers = servers;
  }
}

/**
 * The reason of a failed connect in words, and what to do about it: nats.js says "read ECONNRESET",
 * "connect ECONNREFUSED 127.0.0.1:4222", "TIMEOUT" or "Authorization Violation".
 */
export function connectAdvice(err: unknown, stateDir: string): string {
  const e = err as { message?: string; code?: string; name?: string; cause?: { code?: string; message?: string } };
  const text = `${e.message ?? String(err)} ${e.code ?? ""} ${e.name ?? ""} ${e.cause?.code ?? ""} ${e.cause?.message ?? ""}`;
  if (/authori[sz]ation|authentication|user.*password/i.test(text)) {
    return `the server refused the controller's credentials (${stateDir}/secrets.json): is this the state dir of the netfleet serve behind these servers? Pass --state-dir`;
  }
  const reason = /ECONNREFUSED/.test(text)
    ? "connection refused (nothing listens there)"
    : /TIMEOUT|ETIMEDOUT|timed out/i.test(text)
      ? `no answer within ${DIAL_TIMEOUT_MS / 1000} s`
      : /ECONNRESET/.test(text)
        ? "the connection was reset (not a NATS server, or one refusing this client)"
        : /ENOTFOUND|EAI_AGAIN/.test(text)
          ? "the host name does not resolve"
          : /EHOSTUNREACH|ENETUNREACH/.test(text)
            ? "no route to the host"
            : (e.message ?? String(err));
  return `${reason}. Is netfleet serve running? Start it (netfleet serve <site-dir> --state-dir ${stateDir}), or pass --nats URL[,URL...] of the servers it runs`;
}

/** What connectController hands a command: the control plane, the state dir, and the inventory when one was found. */
export interface Connected {
  cp: ControlPlane;
  home: ControllerHome;
  inventory: Inventory | undefined;
}

/**
 * A controller connection for a command: secrets from the state dir, the
 * servers from --nats, else those `netfleet serve` recorded, else the
 * inventory's site.nats.
 * Reads the state dir only: nothing is written there (a missing one stays missing).
 * @throws Error "no controller state in DIR" (checked before dialling), "no NATS servers",
 *   or ControllerConnectError "cannot use NATS at URL, URL (where they came from): <reason>. <what to do>".
 */
export async function connectController(options: {
  stateDir: string;
  inventory?: Inventory;
  servers?: string[];
  userDirectory?: UserDirectory;
  replicas?: number;
  log?: ControlPlaneOptions["log"];
  /** How long the first dial of each server may take (default DIAL_TIMEOUT_MS). */
  dialTimeoutMs?: number;
  /** How long connecting and opening the site's buckets may take in all (default: no limit). */
  deadlineMs?: number;
}): Promise<Connected> {
  const home = new ControllerHome(options.stateDir);
  const config = await home.config();
  // Before dialling: a state dir with no secrets is the likelier mistake, and a socket error would hide it.
  const secrets = await home.secrets(options.inventory?.site.name ?? config?.site, { create: false });
  let inventory = options.inventory;
  if (!inventory && config?.inventory) {
    try {
      inventory = loadInventory(config.inventory);
    } catch {
      inventory = undefined;
    }
  }
  const servers = options.servers ?? config?.nats ?? inventory?.site.nats;
  const serversFrom = options.servers ? "--nats" : config?.nats ? `recorded by serve in ${home.dir}` : "the site's site.nats";
  if (!servers?.length) throw new Error("no NATS servers: pass --nats URL[,URL...]");
  let cp: ControlPlane;
  try {
    const connecting = ControlPlane.connect({
      site: secrets.site,
      servers,
      user: secrets.controller.user,
      password: secrets.controller.password,
      hosts: inventory?.hosts ?? [],
      // The current token and any replaced one still inside its overlap, read again from secrets.json (at most once
      // a second, by the EnrollmentService): a running serve accepts a token rotated by netfleet keys rotate-enrollment.
      // An unreadable secrets.json (being replaced by hand, say) keeps the tokens read at start.
      enrollmentToken: async () => acceptedEnrollmentTokens(await home.secrets(secrets.site, { create: false }).catch(() => secrets)),
      enrollmentPassword: secrets.enrollment.enrollPassword,
      signing: secrets.signing,
      credentialsDir: home.credentialsDir,
      replicas: options.replicas ?? config?.replicas ?? 1,
      dialTimeoutMs: options.dialTimeoutMs ?? DIAL_TIMEOUT_MS,
      ...(options.userDirectory ? { userDirectory: options.userDirectory } : {}),
      ...(options.log ? { log: options.log } : {}),
    });
    if (options.deadlineMs === undefined) cp = await connecting;
    else {
      // Given up: a connection made after all is closed at once.
      const late = (c: ControlPlane) => void c.close().catch(() => {});
      cp = await withTimeout(connecting, options.deadlineMs, "connecting").catch((err: unknown) => {
        connecting.then(late, () => {});
        throw err instanceof DeadlineError ? new DeadlineError(`the servers took the connection, but their JetStream answered nothing within ${options.deadlineMs! / 1000} s (is this the nats-server of netfleet serve, with JetStream, and is its cluster up?)`) : err;
      });
    }
  } catch (err) {
    if (err instanceof TypeError || err instanceof ReferenceError) throw err;
    const why = err instanceof DeadlineError ? err.message : connectAdvice(err, home.dir);
    throw new ControllerConnectError(`cannot use NATS at ${servers.join(", ")} (${serversFrom}): ${why}`, servers, { cause: err });
  }
  return { cp, home, inventory };
}

/** A bounded wait ran out (withTimeout). */
export class DeadlineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DeadlineError";
  }
}

/**
 * Bounded connect: a controller pointed at a dead server says so instead of waiting forever.
 * @throws DeadlineError "WHAT: no answer within N s" when `p` has not settled within `ms`.
 */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new DeadlineError(`${what}: no answer within ${ms / 1000} s`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

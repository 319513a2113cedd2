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
 * @throws Error "no controller state in DIR" (checked before dialling), "no NATS servers",
 *   or "NATS at URL, URL (where they came from): <reason>" when the connection fails.
 */
export async function connectController(options: {
  stateDir: string;
  inventory?: Inventory;
  servers?: string[];
  userDirectory?: UserDirectory;
  replicas?: number;
  log?: ControlPlaneOptions["log"];
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
    cp = await ControlPlane.connect({
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
      ...(options.userDirectory ? { userDirectory: options.userDirectory } : {}),
      ...(options.log ? { log: options.log } : {}),
    });
  } catch (err) {
    if (err instanceof TypeError || err instanceof ReferenceError) throw err;
    throw new Error(`NATS at ${servers.join(", ")} (${serversFrom}): ${(err as Error).message}`, { cause: err });
  }
  return { cp, home, inventory };
}

/** Bounded connect: a controller pointed at a dead server says so instead of waiting forever. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

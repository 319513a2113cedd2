import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { DNS_LABEL, parseJoinToken, parseNatsUrls, type Inventory } from "@netfleet/shared";
import { TOKEN_ON_ARGV, readToken, tokenFileWarning } from "@netfleet/agent/config";
import { bootstrapHosts, type HostOutcome } from "../bootstrap/bootstrap.ts";
import { buildAgentBundle } from "../bootstrap/bundle.ts";
import { readImageConfig, writeImageFiles } from "../bootstrap/image.ts";
import { UnsafePathError } from "@netfleet/agent";
import { loadIdentity, type SshOptions } from "../bootstrap/ssh.ts";
import { LimitError, selectLimit } from "../select/limit.ts";
import { hostTokens, siteTokens, type AgentTokens } from "../bootstrap/tokens.ts";
import { parseTtl } from "./hosts.ts";
import { stateDirOf } from "./connect.ts";
import type { CommandOutput } from "../output.ts";

/** `netfleet bootstrap`'s options, checked (see bootstrapOptions for the defaults). */
export interface BootstrapOptions {
  /**
   * Where the site's join token (`<id>.<secret>`, from `netfleet token`) is
   * read (a file, or `-` for stdin): every host gets it and only asks to join.
   * Absent: each host gets a host token minted for it from `stateDir`.
   */
  tokenFile?: string;
  /** The controller's state dir host tokens are minted from (--state-dir; absent: $NETFLEET_STATE_DIR or /var/lib/netfleet). */
  stateDir?: string;
  /** How long a minted host token is accepted, ms (default 24 h, at most 30 d). */
  tokenTtlMs: number;
  /** With imageRoot: the image is for this inventory host (its name and its own host token in agent.json). */
  host?: string;
  /** NATS URLs the agents connect to; absent: the site's `site.nats`. */
  nats?: string[];
  /** `--limit` host/group/role patterns (only `*` and `?` are special); absent: every host. */
  limit?: string[];
  /** Record the host keys of hosts not yet in known_hosts (a changed key is still refused). */
  acceptNew: boolean;
  /** Hosts bootstrapped at a time (1–256). */
  concurrency: number;
  /** SSH private key file; absent: the first default key, else ssh-agent. */
  identity?: string;
  /** known_hosts file to check (and with acceptNew, record) host keys in. */
  knownHosts: string;
  /** SSH login name. */
  user: string;
  /** SSH TCP port. */
  port: number;
  /** Write the agent's files into this image root instead of connecting to hosts. */
  imageRoot?: string;
}

/** The option values of `netfleet bootstrap` as commander gives them (camelCase keys; strings, unchecked). */
export interface BootstrapFlags {
  /** Refused (TOKEN_ON_ARGV): a token on the command line is in ps. */
  token?: string | undefined;
  tokenFile?: string | undefined;
  stateDir?: string | undefined;
  tokenTtl?: string | undefined;
  host?: string | undefined;
  nats?: string | undefined;
  limit?: string | undefined;
  acceptNew?: boolean | undefined;
  concurrency?: string | undefined;
  identity?: string | undefined;
  knownHosts?: string | undefined;
  user?: string | undefined;
  port?: string | undefined;
  imageRoot?: string | undefined;
}

const USER = /^[a-z_][a-z0-9_-]{0,31}$/;

/** --token-ttl's duration (parseTtl of `netfleet hosts token --ttl`), in ms. @throws Error naming --token-ttl. */
function tokenTtl(text: string): number {
  try {
    return parseTtl(text);
  } catch (err) {
    throw new Error((err as Error).message.replace(/^--ttl/, "--token-ttl"));
  }
}

/** Checks the flags; throws an Error whose message is the usage problem. */
export function bootstrapOptions(v: BootstrapFlags): BootstrapOptions {
  if (v.token !== undefined) throw new Error(TOKEN_ON_ARGV);
  if (v.tokenFile !== undefined && v.tokenTtl !== undefined) throw new Error("--token-ttl is for the host tokens bootstrap mints; --token-file gives the site's join token instead");
  if (v.tokenFile === "") throw new Error("--token-file takes a file, or - for stdin");
  const o: BootstrapOptions = {
    ...(v.tokenFile !== undefined ? { tokenFile: v.tokenFile } : {}),
    ...(v.stateDir !== undefined ? { stateDir: v.stateDir } : {}),
    tokenTtlMs: v.tokenTtl === undefined ? 24 * 3600_000 : tokenTtl(v.tokenTtl),
    acceptNew: v.acceptNew ?? false,
    concurrency: 8,
    knownHosts: v.knownHosts ?? join(homedir(), ".ssh", "known_hosts"),
    user: v.user ?? "root",
    port: 22,
  };
  if (v.nats !== undefined) {
    try {
      o.nats = parseNatsUrls(v.nats);
    } catch (err) {
      throw new Error(`--nats ${(err as Error).message}`);
    }
  }
  if (v.limit !== undefined) o.limit = v.limit.split(",").map((p) => p.trim()).filter(Boolean);
  if (v.concurrency !== undefined) {
    const n = Number(v.concurrency);
    if (!Number.isInteger(n) || n < 1 || n > 256) throw new Error("--concurrency takes a whole number from 1 to 256");
    o.concurrency = n;
  }
  if (v.port !== undefined) {
    const n = Number(v.port);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error("--port takes a TCP port");
    o.port = n;
  }
  if (!USER.test(o.user)) throw new Error("--user takes a login name");
  if (v.identity !== undefined) o.identity = v.identity;
  if (v.imageRoot !== undefined) {
    if (!v.imageRoot.startsWith("/")) throw new Error("--image-root takes an absolute path (the image's mounted root)");
    o.imageRoot = v.imageRoot;
  }
  if (v.host !== undefined) {
    if (v.imageRoot === undefined) throw new Error("--host is for --image-root (an image for one host); over SSH, --limit picks the hosts");
    if (!DNS_LABEL.test(v.host)) throw new Error("--host takes an inventory host's name (a DNS label)");
    o.host = v.host;
  }
  return o;
}

/**
 * Where the agents' tokens come from: the site's join token of --token-file
 * (checked to be one), else host tokens minted from the state dir. Returns
 * the exit code after printing one line when neither works.
 */
async function agentTokens(inventory: Inventory, o: BootstrapOptions, out: CommandOutput): Promise<AgentTokens | number> {
  if (o.tokenFile !== undefined) {
    try {
      const join = parseJoinToken(await readToken(o.tokenFile));
      const warning = await tokenFileWarning(o.tokenFile);
      if (warning) out.error(`netfleet bootstrap: ${warning}`);
      if (join.host !== undefined) throw new Error(`holds a host token for ${join.host}; bootstrap mints one per host itself (leave out --token-file), --token-file takes the site's join token`);
      return siteTokens(join.token);
    } catch (err) {
      out.error(`netfleet bootstrap: --token-file ${o.tokenFile}: ${(err as Error).message}`);
      return 64;
    }
  }
  const stateDir = stateDirOf(o.stateDir);
  try {
    return await hostTokens(stateDir, inventory.site.name, o.tokenTtlMs);
  } catch (err) {
    out.error(`netfleet bootstrap: cannot mint host tokens: ${(err as Error).message}; or give --token-file with the site's join token (its hosts then wait for netfleet hosts approve)`);
    return 1;
  }
}

/** The key to log in with: --identity, else the first default key file, else ssh-agent. */
function sshAuth(identity: string | undefined): SshOptions["auth"] {
  if (identity) return { privateKey: loadIdentity(identity), identityFile: identity };
  for (const name of ["id_ed25519", "id_ecdsa", "id_rsa"]) {
    const file = join(homedir(), ".ssh", name);
    if (existsSync(file)) return { privateKey: loadIdentity(file), identityFile: file };
  }
  if (process.env.SSH_AUTH_SOCK) return { agent: process.env.SSH_AUTH_SOCK };
  throw new Error("no SSH key: give --identity FILE, or have ~/.ssh/id_ed25519 (or id_ecdsa, id_rsa), or an ssh-agent");
}

function line(r: HostOutcome): string {
  const secs = `${(r.ms / 1000).toFixed(1)} s`;
  if (r.status === "failed") return `${r.host}: FAILED: ${r.error!.message}`;
  const what = r.changes.length > 0 ? ` (${r.changes.join(", ")})` : "";
  return `${r.host}: ${r.status}${what}, agent via ${r.runtime}, ${secs}`;
}

/**
 * `netfleet bootstrap <site-dir>`: installs the agent on the site's hosts
 * over SSH, configured to enroll with the site's controller, and starts it.
 * Exit 0 when every host is done, 1 when any failed, 64 on a usage problem.
 */
export async function bootstrapCommand(inventory: Inventory, o: BootstrapOptions, out: CommandOutput): Promise<number> {
  if (o.imageRoot !== undefined && o.host === undefined && o.tokenFile === undefined) {
    out.error("netfleet bootstrap: --image-root without --host writes an image for any host, which can only carry the site's join token: give --host NAME (its own host token), or --token-file with the site's token (its hosts then wait for netfleet hosts approve)");
    return 64;
  }
  if (o.host !== undefined && !inventory.hosts.some((h) => h.name === o.host)) {
    out.error(`netfleet bootstrap: --host ${o.host} is not a host of site ${inventory.site.name}`);
    return 64;
  }
  const tokens = await agentTokens(inventory, o, out);
  if (typeof tokens === "number") return tokens;
  if (o.imageRoot !== undefined) return imageCommand(inventory, o, o.imageRoot, tokens, out);
  let hosts = inventory.hosts;
  if (o.limit?.length) {
    let chosen: Set<string>;
    try {
      chosen = selectLimit(inventory.hosts, o.limit, inventory.site.name);
    } catch (err) {
      if (!(err instanceof LimitError)) throw err;
      out.error(`netfleet bootstrap: ${err.message}`);
      return 64;
    }
    hosts = hosts.filter((h) => chosen.has(h.name));
  }
  const nats = o.nats ?? inventory.site.nats;
  if (!nats || nats.length === 0) {
    out.error("netfleet bootstrap: the site names no NATS servers (site.nats); give --nats URL[,URL...]");
    return 64;
  }
  let auth;
  try {
    auth = sshAuth(o.identity);
  } catch (err) {
    out.error(`netfleet bootstrap: ${(err as Error).message}`);
    return 64;
  }
  const t0 = performance.now();
  const bundle = await buildAgentBundle();
  if (!out.json) out.line(`agent bundle: ${Math.round(bundle.code.length / 1024)} KB, sha256 ${bundle.sha256.slice(0, 12)}; ${hosts.length} host(s), ${o.concurrency} at a time`);
  const results = await bootstrapHosts(
    hosts,
    { site: inventory.site.name, nats, tokens, user: o.user, port: o.port, auth, knownHostsFile: o.knownHosts, acceptNew: o.acceptNew, concurrency: o.concurrency, bundle },
    (host, message) => {
      if (!out.json) out.line(`${host}: ${message}`);
    },
  );
  const count = (s: HostOutcome["status"]) => results.filter((r) => r.status === s).length;
  const summary = { changed: count("changed"), unchanged: count("unchanged"), failed: count("failed") };
  const wallMs = Math.round(performance.now() - t0);
  if (out.json) out.emit({ site: inventory.site.name, bundle: { sha256: bundle.sha256, bytes: bundle.code.length }, summary, wallMs, hosts: results });
  else {
    for (const r of results) (r.status === "failed" ? out.error : out.line)(line(r));
    out.line(`${inventory.site.name}: ${summary.changed} changed, ${summary.unchanged} unchanged, ${summary.failed} failed (${(wallMs / 1000).toFixed(1)} s)`);
  }
  return summary.failed > 0 ? 1 : 0;
}

/**
 * `netfleet bootstrap <site-dir> --image-root DIR`: the agent's files for a
 * host image (see bootstrap/image.ts); hosts booted from it enroll by
 * themselves. No --limit: an image is for any host of the site.
 */
async function imageCommand(inventory: Inventory, o: BootstrapOptions, root: string, tokens: AgentTokens, out: CommandOutput): Promise<number> {
  const nats = o.nats ?? inventory.site.nats;
  if (o.limit?.length) {
    out.error("netfleet bootstrap: --image-root writes one image (for any host of the site, or the --host one); --limit does not apply");
    return 64;
  }
  if (!nats || nats.length === 0) {
    out.error("netfleet bootstrap: the site names no NATS servers (site.nats); give --nats URL[,URL...]");
    return 64;
  }
  if (!existsSync(root)) {
    out.error(`netfleet bootstrap: --image-root ${root} does not exist (mount the image there first)`);
    return 64;
  }
  let files;
  try {
    const settings = { site: inventory.site.name, nats, ...(o.host !== undefined ? { name: o.host } : {}) };
    // A token already in the image stays when it may (the same site token; a host token for this host, still good).
    const present = readImageConfig(root);
    const same = present !== undefined && present.site === settings.site && present.nats.join(",") === nats.join(",") && present.name === settings.name && present.stateDir === undefined && present.runDir === undefined;
    const token = same && tokens.keeps(present.token, o.host ?? "", false) ? present.token : await tokens.forHost(o.host ?? "");
    // Built after the image's agent.json was read: a link on its way is refused before this second of work.
    const bundle = await buildAgentBundle();
    files = writeImageFiles(root, { bundle, node: process.execPath, config: { ...settings, token } });
  } catch (err) {
    if (!(err instanceof UnsafePathError)) throw err;
    out.error(`netfleet bootstrap: --image-root ${root}: ${err.message}`);
    return 1;
  }
  const changed = files.filter((f) => f.changed).length;
  if (out.json) out.emit({ site: inventory.site.name, imageRoot: root, status: changed > 0 ? "changed" : "unchanged", files });
  else {
    for (const f of files) out.line(`${f.changed ? "written  " : "unchanged"} ${join(root, f.path)}`);
    out.line(`${root}: ${changed > 0 ? `${changed} file(s) written` : "unchanged"}; hosts booted from it enroll with site ${inventory.site.name}`);
  }
  return 0;
}

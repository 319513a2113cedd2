import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { parseJoinToken, parseNatsUrls, type Inventory } from "@netfleet/shared";
import { TOKEN_ON_ARGV, readToken } from "@netfleet/agent/config";
import { bootstrapHosts, type HostOutcome } from "../bootstrap/bootstrap.ts";
import { buildAgentBundle } from "../bootstrap/bundle.ts";
import { writeImageFiles } from "../bootstrap/image.ts";
import { UnsafePathError } from "@netfleet/agent";
import { loadIdentity, type SshOptions } from "../bootstrap/ssh.ts";
import { limitHosts } from "../rollout/waves.ts";
import type { CommandOutput } from "../output.ts";

/** `netfleet bootstrap`'s options, checked (see bootstrapOptions for the defaults). */
export interface BootstrapOptions {
  /** Where the site's join token (`<id>.<secret>`, from `netfleet token`) is read: a file, or `-` for stdin. */
  tokenFile: string;
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

/** Checks the flags; throws an Error whose message is the usage problem. */
export function bootstrapOptions(v: BootstrapFlags): BootstrapOptions {
  if (v.token !== undefined) throw new Error(TOKEN_ON_ARGV);
  if (!v.tokenFile) throw new Error("--token-file FILE (or - for stdin) is required: the site's join token (netfleet token prints it)");
  const o: BootstrapOptions = {
    tokenFile: v.tokenFile,
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
  return o;
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
  let token: string;
  try {
    token = parseJoinToken(await readToken(o.tokenFile)).token;
  } catch (err) {
    out.error(`netfleet bootstrap: --token-file ${o.tokenFile}: ${(err as Error).message}`);
    return 64;
  }
  if (o.imageRoot !== undefined) return imageCommand(inventory, o, o.imageRoot, token, out);
  let hosts = inventory.hosts;
  if (o.limit?.length) {
    const { hosts: chosen, unmatched } = limitHosts(inventory, o.limit);
    if (unmatched.length > 0) {
      out.error(`netfleet bootstrap: --limit ${unmatched.join(",")} matches no host, group or role of site ${inventory.site.name}`);
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
    { site: inventory.site.name, nats, token, user: o.user, port: o.port, auth, knownHostsFile: o.knownHosts, acceptNew: o.acceptNew, concurrency: o.concurrency, bundle },
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
async function imageCommand(inventory: Inventory, o: BootstrapOptions, root: string, token: string, out: CommandOutput): Promise<number> {
  const nats = o.nats ?? inventory.site.nats;
  if (o.limit?.length) {
    out.error("netfleet bootstrap: --image-root writes one image for any host of the site; --limit does not apply");
    return 64;
  }
  if (!existsSync(root)) {
    out.error(`netfleet bootstrap: --image-root ${root} does not exist (mount the image there first)`);
    return 64;
  }
  const bundle = await buildAgentBundle();
  let files;
  try {
    files = writeImageFiles(root, { bundle, node: process.execPath, config: { site: inventory.site.name, nats, token } });
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

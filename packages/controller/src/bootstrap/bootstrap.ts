import { createHash } from "node:crypto";
import { createReadStream, statSync } from "node:fs";
import PQueue from "p-queue";
import type { Host } from "@netfleet/shared";
import type { AgentBundle } from "./bundle.ts";
import { checkAgentConfig, renderConfig, type AgentConfig } from "@netfleet/agent/config";
import { REMOTE, agentExecArgv, renderUnit } from "./layout.ts";
import { availableBytes, isDebianFamily, missingPackages, moduleAvailable, nodeMajor, parseOsRelease, requirementsFor, unameArch } from "./requirements.ts";
import { SAFE_PATH } from "./remote-command.ts";
import { BootstrapError, SshSession, type FailureKind, type SshOptions } from "./ssh.ts";
import type { AgentTokens } from "./tokens.ts";

export interface BootstrapSettings {
  site: string;
  nats: string[];
  /** Each host's token: minted for it, or the site's (tokens.ts). */
  tokens: AgentTokens;
  user: string;
  port: number;
  auth: SshOptions["auth"];
  knownHostsFile: string;
  acceptNew: boolean;
  concurrency: number;
  bundle: AgentBundle;
  /** The Node binary shipped to hosts without Node >= 22 (default: the controller's own). */
  localNode?: string;
  readyTimeoutMs?: number;
}

export type Change = "host-key-recorded" | "agent" | "node" | "config" | "unit" | "daemon-reload" | "enabled" | "started" | "restarted";

export interface HostOutcome {
  host: string;
  address: string;
  status: "changed" | "unchanged" | "failed";
  changes: Change[];
  runtime?: "systemd" | "detached";
  node?: string;
  os?: string;
  hostKey?: string;
  error?: { kind: FailureKind | "internal"; message: string };
  ms: number;
}

export type Progress = (host: string, message: string) => void;

const MIN_NODE = 22;
/** Room kept free besides what is uploaded (the new file sits beside the old one until the rename). */
const DISK_MARGIN = 32 * 1024 * 1024;

function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash("sha256");
    createReadStream(path).on("data", (d) => h.update(d)).on("error", reject).on("end", () => resolve(h.digest("hex")));
  });
}

/** Bootstraps every host, `concurrency` at a time; never throws for one host's failure. */
export async function bootstrapHosts(hosts: readonly Host[], s: BootstrapSettings, progress: Progress = () => {}): Promise<HostOutcome[]> {
  const localNode = s.localNode ?? process.execPath;
  let nodeSum: Promise<string> | undefined;
  const shipped = () => (nodeSum ??= sha256File(localNode));
  const queue = new PQueue({ concurrency: s.concurrency });
  const outcomes = await Promise.all(hosts.map((h) => queue.add(() => bootstrapHost(h, s, { path: localNode, sha256: shipped }, progress))));
  return outcomes;
}

async function bootstrapHost(host: Host, s: BootstrapSettings, node: { path: string; sha256: () => Promise<string> }, progress: Progress): Promise<HostOutcome> {
  const t0 = performance.now();
  const address = host.address ?? host.name;
  const out: HostOutcome = { host: host.name, address, status: "unchanged", changes: [], ms: 0 };
  const say = (m: string) => progress(host.name, m);
  let ssh: SshSession | undefined;
  try {
    say(`connecting to ${s.user}@${address}:${s.port}`);
    ssh = await SshSession.connect({
      address,
      name: host.name,
      port: s.port,
      user: s.user,
      auth: s.auth,
      knownHostsFile: s.knownHostsFile,
      acceptNew: s.acceptNew,
      ...(s.readyTimeoutMs ? { readyTimeoutMs: s.readyTimeoutMs } : {}),
    });
    out.hostKey = ssh.hostKey.fingerprint;
    if (ssh.hostKey.recorded) out.changes.push("host-key-recorded");
    say(`connected (${ssh.serverVersion || "ssh"}), host key ${ssh.hostKey.fingerprint}${ssh.hostKey.recorded ? ", new: recorded in " + s.knownHostsFile : ""}`);
    await converge(ssh, host, s, node, out, say);
  } catch (err) {
    out.status = "failed";
    out.error = err instanceof BootstrapError ? { kind: err.kind, message: err.message } : { kind: "internal", message: (err as Error).message };
  } finally {
    ssh?.close();
  }
  if (out.status !== "failed") out.status = out.changes.length > 0 ? "changed" : "unchanged";
  out.ms = Math.round(performance.now() - t0);
  return out;
}

/** The agent's state dir on a host when agent.json names none (the agent's own default). */
const AGENT_STATE_DIR = "/var/lib/netfleet-agent";

/**
 * The agent.json the host must have, and whether it differs from the one
 * there: the same site, NATS and name, and a token the host may keep
 * (AgentTokens.keeps: the site's, or a host token for it still good or
 * already spent on its enrollment), leave the file as it is; anything else
 * gets a new file with a token minted now (read over SFTP, never a command line).
 */
async function agentConfig(ssh: SshSession, name: string, s: BootstrapSettings): Promise<{ text: Buffer; stale: boolean }> {
  const present = await ssh.readFile(REMOTE.config);
  let existing: AgentConfig | undefined;
  try {
    existing = present ? checkAgentConfig(JSON.parse(present.toString("utf8"))) : undefined;
  } catch {
    existing = undefined;
  }
  if (present && existing && existing.site === s.site && existing.nats.join(",") === s.nats.join(",") && existing.name === name && existing.stateDir === undefined && existing.runDir === undefined) {
    const enrolled = s.tokens.kind === "host" && (await ssh.exists(`${AGENT_STATE_DIR}/credentials.json`));
    if (s.tokens.keeps(existing.token, name, enrolled)) return { text: present, stale: false };
  }
  const config: AgentConfig = { site: s.site, nats: s.nats, token: await s.tokens.forHost(name), name };
  return { text: Buffer.from(renderConfig(config)), stale: true };
}

async function converge(ssh: SshSession, host: Host, s: BootstrapSettings, node: { path: string; sha256: () => Promise<string> }, out: HostOutcome, say: (m: string) => void): Promise<void> {
  // 1. Check the host; read only.
  const uid = (await ssh.run(["id", "-u"])).trim();
  if (uid !== "0") throw new BootstrapError("not-root", `needs root: ${s.user} is uid ${uid} on this host (use --user root)`);
  const [kernel, release, machine] = (await ssh.run(["uname", "-s", "-r", "-m"])).trim().split(/\s+/);
  if (kernel !== "Linux" || !release || !machine) throw new BootstrapError("unsupported", `unsupported system: ${kernel ?? "?"} (netfleet hosts run Linux)`);
  const os = parseOsRelease((await ssh.readFile("/etc/os-release"))?.toString("utf8") ?? "");
  out.os = `${os.PRETTY_NAME ?? os.ID ?? "unknown Linux"}, kernel ${release}`;
  if (!isDebianFamily(os)) throw new BootstrapError("unsupported", `unsupported OS: ${out.os} (bootstrap checks packages with dpkg: Debian and its derivatives)`);
  const need = requirementsFor(host);
  const dpkg = await ssh.exec(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\\n", ...need.packages]);
  const missing = missingPackages(need.packages, dpkg.stdout);
  if (missing.length > 0) throw new BootstrapError("missing-packages", `missing packages: ${missing.join(", ")} (apt-get install ${missing.join(" ")})`);
  if (need.modules.length > 0) {
    const dir = `/lib/modules/${release}`;
    if (!/^[A-Za-z0-9._+-]+$/.test(release)) throw new BootstrapError("unsupported", `odd kernel release ${JSON.stringify(release)}`);
    const [builtin, dep] = await Promise.all([ssh.readFile(`${dir}/modules.builtin`), ssh.readFile(`${dir}/modules.dep`)]);
    const absent: string[] = [];
    for (const m of need.modules) {
      if (!(await ssh.exists(`/sys/module/${m}`)) && !moduleAvailable(m, builtin?.toString("utf8") ?? "", dep?.toString("utf8") ?? "")) absent.push(m);
    }
    if (absent.length > 0) {
      throw new BootstrapError("missing-kernel-features", `kernel ${release} lacks ${absent.join(", ")} (needed by uplink mode ${host.uplink.mode}, datapath ${host.uplink.datapath}; ovs-trunk/netdev needs none)`);
    }
  }
  const systemd = await ssh.exists("/run/systemd/system");
  out.runtime = systemd ? "systemd" : "detached";

  // 2. Which Node runs the agent: the host's when >= 22, else ours (same architecture).
  let nodePath: string = REMOTE.node;
  let shipNode = true;
  const found = await ssh.exec(["command", "-v", "node"]);
  const hostNode = found.code === 0 ? found.stdout.trim().split("\n")[0] : undefined;
  // Its path goes into the unit and into commands: only a plain absolute path is used.
  if (hostNode && SAFE_PATH.test(hostNode) && hostNode !== REMOTE.node) {
    const v = await ssh.exec([hostNode, "--version"]);
    if (v.code === 0 && (nodeMajor(v.stdout) ?? 0) >= MIN_NODE) {
      nodePath = hostNode;
      shipNode = false;
    }
  }
  if (shipNode && (process.platform !== "linux" || unameArch(process.arch) !== machine)) {
    throw new BootstrapError("unsupported", `the host has no Node >= ${MIN_NODE} and the controller's Node is ${process.platform}-${process.arch}, not Linux ${machine}: install nodejs >= ${MIN_NODE} on the host`);
  }
  out.node = nodePath;

  // 3. What differs.
  const sums = new Map<string, string>();
  const present = await ssh.exec(["sha256sum", REMOTE.agent, ...(shipNode ? [REMOTE.node] : [])]);
  for (const line of present.stdout.split("\n")) {
    const m = /^([0-9a-f]{64})\s+\*?(\S+)$/.exec(line.trim());
    if (m) sums.set(m[2]!, m[1]!);
  }
  const { text: configText, stale: configStale } = await agentConfig(ssh, host.name, s);
  const unitText = Buffer.from(renderUnit(nodePath));
  const agentStale = sums.get(REMOTE.agent) !== s.bundle.sha256;
  const nodeStale = shipNode && sums.get(REMOTE.node) !== (await node.sha256());
  const unitStale = !(await ssh.readFile(REMOTE.unit))?.equals(unitText);

  const uploadBytes = (agentStale ? s.bundle.code.length : 0) + (nodeStale ? statSync(node.path).size : 0);
  if (uploadBytes > 0) {
    const target = (await ssh.exists(REMOTE.dir)) ? REMOTE.dir : "/opt";
    const free = availableBytes((await ssh.exec(["df", "-Pk", target])).stdout);
    if (free !== undefined && free < uploadBytes + DISK_MARGIN) {
      const mb = (n: number) => `${Math.round(n / 1048576)} MB`;
      throw new BootstrapError("no-disk-space", `no disk space: ${target} has ${mb(free)} free, the agent needs ${mb(uploadBytes + DISK_MARGIN)}`);
    }
  }

  // 4. Install what differs.
  if (agentStale || nodeStale) await ssh.run(["mkdir", "-p", REMOTE.dir]);
  if (nodeStale) {
    say(`uploading Node (${Math.round(statSync(node.path).size / 1048576)} MB): the host has no Node >= ${MIN_NODE}`);
    await ssh.install(REMOTE.node, { localFile: node.path }, 0o755);
    out.changes.push("node");
  }
  if (agentStale) {
    say(`uploading the agent bundle (${Math.round(s.bundle.code.length / 1024)} KB, sha256 ${s.bundle.sha256.slice(0, 12)})`);
    await ssh.install(REMOTE.agent, { data: s.bundle.code }, 0o644);
    out.changes.push("agent");
  }
  if (configStale) {
    // The token goes into /etc/netfleet: never through a link somewhere else, and only root may enter it.
    for (const p of ["/etc", REMOTE.configDir, REMOTE.config]) {
      if (await ssh.isSymlink(p)) throw new BootstrapError("unsupported", `${p} on the host is a symbolic link; refused, the token is not written through it`);
    }
    await ssh.run(["mkdir", "-p", "-m", "700", REMOTE.configDir]);
    await ssh.run(["chmod", "700", REMOTE.configDir]);
    await ssh.install(REMOTE.config, { data: configText }, 0o600);
    out.changes.push("config");
  }
  if (unitStale) {
    await ssh.run(["mkdir", "-p", "/etc/systemd/system"]);
    await ssh.install(REMOTE.unit, { data: unitText }, 0o644);
    out.changes.push("unit");
  }
  const restart = agentStale || nodeStale || configStale || unitStale;
  if (restart) say(`installed: ${out.changes.filter((c) => c !== "host-key-recorded").join(", ")}`);

  // 5. Run it.
  if (systemd) {
    if (unitStale) {
      await ssh.run(["systemctl", "daemon-reload"]);
      out.changes.push("daemon-reload");
    }
    const enabled = (await ssh.exec(["systemctl", "is-enabled", REMOTE.unitName])).stdout.trim();
    if (enabled !== "enabled") {
      await ssh.run(["systemctl", "enable", REMOTE.unitName]);
      out.changes.push("enabled");
    }
    const active = (await ssh.exec(["systemctl", "is-active", REMOTE.unitName])).code === 0;
    if (!active || restart) {
      await ssh.run(["systemctl", active ? "restart" : "start", REMOTE.unitName]);
      out.changes.push(active ? "restarted" : "started");
      await new Promise((r) => setTimeout(r, 1000));
      if ((await ssh.exec(["systemctl", "is-active", REMOTE.unitName])).code !== 0) {
        throw new BootstrapError("agent-not-running", `the agent stopped right after starting: journalctl -u ${REMOTE.unitName} on the host says why`);
      }
    }
  } else {
    const agent = agentExecArgv(nodePath).slice(0, 2);
    const running = (await ssh.exec([...agent, "status-detached", REMOTE.pidfile])).code === 0;
    if (running && restart) await ssh.run([...agent, "stop-detached", REMOTE.pidfile], 30_000);
    if (!running || restart) {
      const r = await ssh.exec([...agent, "start-detached", REMOTE.config, REMOTE.pidfile, REMOTE.log], 30_000);
      if (r.code !== 0) throw new BootstrapError("agent-not-running", `the agent did not stay up: ${(r.stderr || r.stdout).trim()} (log: ${REMOTE.log})`);
      out.changes.push(running ? "restarted" : "started");
    }
  }
  say(restart || out.changes.length > 0 ? `agent ${out.changes.includes("restarted") ? "restarted" : out.changes.includes("started") ? "started" : "running"} (${out.runtime})` : `unchanged, agent running (${out.runtime})`);
}

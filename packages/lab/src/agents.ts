/**
 * The product on the lab: argv of `netfleet` on the controller machine and
 * of `netfleet-agent` in a host's namespace, the controller service, and
 * the agent daemons (start, stop).
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeOwned } from "@netfleet/agent";
import { LabExec, netnsExec, waitFor } from "./exec.ts";
import { isAlive, terminate } from "./procs.ts";
import { productBin } from "./product.ts";
import { runningIn, startDetached } from "./services.ts";
import { labHostOf, writeLabState } from "./state.ts";
import type { Topology, TopoHost } from "./topology.ts";
import type { LabHost, LabOptions } from "./types.ts";
import { LAB_UI_LISTEN } from "./ui-dashboard.ts";

/**
 * What the lab passes to every `netfleet rollout` it runs (up's, and
 * `netfleet-lab rollout`'s): `--yes`. The lab is never a terminal, and
 * netfleet refuses to publish from anything else without it; running `up`
 * or `rollout` is the operator's confirmation.
 */
export const ROLLOUT_CONFIRM: readonly string[] = ["--yes"];

/** argv of a `netfleet` command run on the lab's controller machine (the switch namespace). */
export function controllerCommand(t: Topology, o: LabOptions, args: string[]): string[] {
  return netnsExec(t.controller.namespace, [process.execPath, productBin(o, "controller"), ...args, "--state-dir", t.controller.stateDir, "--nats", t.controller.url]);
}

/** The site's join token, as `netfleet token` prints it (a host enrolling with it waits for an operator); throws when it printed none. */
export async function controllerToken(t: Topology, o: LabOptions): Promise<string> {
  const r = await new LabExec().read([process.execPath, productBin(o, "controller"), "token", o.inventoryDir, "--state-dir", t.controller.stateDir]);
  const token = r.stdout.trim();
  if (!/^[A-Za-z0-9._-]{8,200}$/.test(token)) throw new Error(`netfleet token printed no usable token`);
  return token;
}

/**
 * A host token for one lab host, as `netfleet hosts token NAME` mints it
 * (single use, 24 h): the agent enrolling with it is approved at once.
 * Throws when it printed none.
 */
export async function controllerHostToken(t: Topology, o: LabOptions, host: string): Promise<string> {
  const r = await new LabExec().read([process.execPath, productBin(o, "controller"), "hosts", "token", host, o.inventoryDir, "--state-dir", t.controller.stateDir]);
  const token = r.stdout.trim();
  if (!/^nfh1\.[A-Za-z0-9._-]{8,400}$/.test(token)) throw new Error(`netfleet hosts token ${host} printed no usable token`);
  return token;
}

/** Whether `netfleet status` shows every lab host with these assignments desired and applied, without drift. */
export async function fleetAtAssignments(x: LabExec, t: Topology, o: LabOptions, assignments: Map<string, { hash: string }>): Promise<boolean> {
  const r = await x.probe(controllerCommand(t, o, ["status", "--json"]));
  if (r.exitCode !== 0) return false;
  try {
    const hosts = (JSON.parse(r.stdout) as { hosts: { host: string; drift: boolean; desired: { hash: string } | null; applied: { hash: string | null; rolledBack: boolean } | null }[] }).hosts;
    return t.hosts.every((h) => {
      const row = hosts.find((x) => x.host === h.name);
      const want = assignments.get(h.name)?.hash;
      return row !== undefined && !row.drift && row.desired?.hash === want && row.applied?.hash === want && row.applied?.rolledBack !== true;
    });
  } catch {
    return false;
  }
}

/** `netfleet serve` (with its nats-server) on the controller machine; a running one is kept. */
export async function ensureController(t: Topology, o: LabOptions, step: (s: string) => void): Promise<Record<string, number>> {
  const c = t.controller;
  mkdirSync(c.stateDir, { recursive: true });
  const pidfile = join(c.stateDir, "serve.pid");
  const log = join(c.stateDir, "serve.log");
  const cli = productBin(o, "controller");
  let pid = runningIn(pidfile, cli, c.namespace);
  if (pid === undefined) {
    const before = existsSync(log) ? readFileSync(log, "utf8").length : 0;
    pid = startDetached(
      netnsExec(c.namespace, [process.execPath, cli, "serve", o.inventoryDir, "--listen", `${c.address}:${c.port}`, "--state-dir", c.stateDir, "--ui", LAB_UI_LISTEN]),
      pidfile,
      log,
    );
    await waitFor("netfleet serve to print its ready line", 60_000, () => {
      const text = existsSync(log) ? readFileSync(log, "utf8").slice(before) : "";
      if (!isAlive(pid)) throw new Error(`netfleet serve exited; see ${log}:\n${text.slice(-2000)}`);
      return text.includes('"event":"ready"');
    }, 100);
    step(`controller: netfleet serve on ${c.url} (pid ${pid})`);
  }
  return { [`netfleet-serve@${c.namespace}`]: pid };
}

/** A topology host as LabStatus shows it. */
export function labHost(h: TopoHost): LabHost {
  const out: LabHost = { name: h.name, role: h.role, namespace: h.namespace, ovsDb: h.ovs.db, ovsRundir: h.ovs.dir, agentDir: h.agentDir };
  if (h.mgmtAddress) out.mgmtAddress = h.mgmtAddress;
  if (h.libvirt) out.libvirtUri = h.libvirt.uri;
  return out;
}

/** argv that runs netfleet-agent inside the host's namespace, pointed at that host's OVS and libvirtd. */
export function agentCommand(o: LabOptions, host: LabHost, args: string[]): string[] {
  return netnsExec(host.namespace, [
    process.execPath,
    productBin(o, "agent"),
    ...args,
    "--ovs-db",
    host.ovsDb,
    "--ovs-rundir",
    host.ovsRundir,
    "--run-dir",
    host.agentDir,
    ...(host.libvirtUri ? ["--libvirt-uri", host.libvirtUri] : []),
  ]);
}

/** The pid of the host's agent daemon (`<agentDir>/agent.pid`) when it runs in that host's namespace. */
export function agentDaemonPid(o: LabOptions, h: TopoHost): number | undefined {
  return runningIn(join(h.agentDir, "agent.pid"), productBin(o, "agent"), h.namespace);
}

/**
 * Starts `netfleet-agent run` detached in the host's namespace, its pid in
 * `<agentDir>/agent.pid`, its output appended to `<agentDir>/agent.log`.
 * `nats`: it enrolls with the host token in `<agentDir>/join-token` (minted
 * for it by lab up) and keeps its state in `<agentDir>/state`; `file`: it follows
 * the assignment file the lab writes. Returns its pid.
 */
export function startAgentDaemon(o: LabOptions, t: Topology, h: TopoHost, control: "nats" | "file"): number {
  mkdirSync(h.agentDir, { recursive: true });
  const args =
    control === "nats"
      ? ["run", "--site", t.site, "--nats", t.controller.url, "--token-file", join(h.agentDir, "join-token"), "--name", h.name, "--state-dir", join(h.agentDir, "state")]
      : ["run", "--assignment", h.assignmentFile, "--name", h.name];
  return startDetached(agentCommand(o, labHost(h), args), join(h.agentDir, "agent.pid"), join(h.agentDir, "agent.log"));
}

/**
 * Writes the token (a host token) a `nats` agent daemon enrolls with: a
 * file, not argv (ps shows argv to everyone), mode 0600 whatever was there
 * (writeOwned: an exclusive temp file renamed over it; a symlink in its
 * place is refused, never followed).
 */
export async function writeJoinToken(h: TopoHost, token: string): Promise<void> {
  mkdirSync(h.agentDir, { recursive: true });
  await writeOwned(join(h.agentDir, "join-token"), `${token}\n`, 0o600);
}

/**
 * Stops the agent daemon of one lab host (SIGTERM by the pid in its pidfile,
 * SIGKILL after 3 s), leaving the host as it is: the way an operator stops
 * the agent's unit. Returns the pid it stopped, or undefined when none ran.
 */
export async function labStopAgent(o: LabOptions, hostName: string): Promise<number | undefined> {
  const { h } = labHostOf(o, hostName);
  const pid = agentDaemonPid(o, h);
  if (pid === undefined) return undefined;
  const left = await terminate([pid]);
  if (left.length > 0) throw new Error(`agent ${pid} of ${hostName} survived SIGKILL`);
  return pid;
}

/**
 * Starts the agent daemon of one lab host when none runs (the lab's control
 * mode, `nats` unless `o.control` says `file`) and records its pid in
 * lab.json. Returns its pid; does not wait for it to converge.
 */
export function labStartAgent(o: LabOptions, hostName: string): number {
  const { state, t, h } = labHostOf(o, hostName);
  const pid = agentDaemonPid(o, h) ?? startAgentDaemon(o, t, h, o.control ?? "nats");
  state.pids[`netfleet-agent@${h.namespace}`] = pid;
  writeLabState(o.runDir, state);
  return pid;
}

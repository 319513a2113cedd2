import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadInventory } from "@netfleet/shared";
import { compileSite } from "@netfleet/controller";
import { LabExec, netnsExec, sleep, vsctl, waitFor } from "./exec.ts";
import { domainState, ensureDomain, ensureLibvirtd, libvirtdPid, stopLibvirtd } from "./libvirt.ts";
import { ensureOvs, ovsPids, stopOvs } from "./ovs.ts";
import { isAlive, labProcesses, namespaceExists, namespacesWithPrefix, netnsInode, pidInNetns, readPidfile, terminate } from "./procs.ts";
import { buildTopology, validateOptions, type TopoHost, type Topology, type TopoVm } from "./topology.ts";
import { lagsOf, switchArgs } from "./switch.ts";
import { dhcp, ensureInet, ensureVmServices, readLease, runningIn, startDetached } from "./services.ts";
import { productBin } from "./product.ts";
import type { LabGateway, LabHost, LabOptions, LabStatus, LabVm } from "./types.ts";

/** runDir/lab.json: what the lab built, for down and status. */
export interface LabState {
  version: 1;
  prefix: string;
  runDir: string;
  inventoryDir: string;
  fingerprint: string;
  topology: Topology;
  /** Daemon pids by role, e.g. `ovs-vswitchd@nf-hosta`, `libvirtd@nf-hosta`. */
  pids: Record<string, number>;
  /** Agent apply results (summary per host) of the last up. */
  agents: Record<string, { exitCode: number; summary?: AgentSummary; wallMs?: number; check?: boolean }>;
  updatedAt: string;
}

interface AgentSummary {
  ok: number;
  changed: number;
  failed: number;
  pending: number;
}

/** Names the lab's upstream resolver answers (the "internet" of the lab). */
export const INET_NAMES = new Map([
  ["mirror.inet.test", "198.51.100.20"],
  ["www.inet.test", "198.51.100.10"],
]);

const STATE_FILE = "lab.json";
/** Top-level entries of a run dir; down refuses to delete a folder holding anything else. */
const RUNDIR_ENTRIES = new Set([STATE_FILE, `${STATE_FILE}.tmp`, "hosts", "switch", "assignments", "inet", "vms", "controller"]);

/** argv of a `netfleet` command run on the lab's controller machine (the switch namespace). */
export function controllerCommand(t: Topology, o: LabOptions, args: string[]): string[] {
  return netnsExec(t.controller.namespace, [process.execPath, productBin(o, "controller"), ...args, "--state-dir", t.controller.stateDir, "--nats", t.controller.url]);
}

async function controllerToken(t: Topology, o: LabOptions): Promise<string> {
  const r = await new LabExec().read([process.execPath, productBin(o, "controller"), "token", o.inventoryDir, "--state-dir", t.controller.stateDir]);
  const token = r.stdout.trim();
  if (!/^[A-Za-z0-9._-]{8,200}$/.test(token)) throw new Error(`netfleet token printed no usable token`);
  return token;
}

/** Whether `netfleet status` shows every lab host with these assignments desired and applied, without drift. */
async function fleetAtAssignments(x: LabExec, t: Topology, o: LabOptions, assignments: Map<string, { hash: string }>): Promise<boolean> {
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
async function ensureController(t: Topology, o: LabOptions, step: (s: string) => void): Promise<Record<string, number>> {
  const c = t.controller;
  mkdirSync(c.stateDir, { recursive: true });
  const pidfile = join(c.stateDir, "serve.pid");
  const log = join(c.stateDir, "serve.log");
  const cli = productBin(o, "controller");
  let pid = runningIn(pidfile, cli, c.namespace);
  if (pid === undefined) {
    const before = existsSync(log) ? readFileSync(log, "utf8").length : 0;
    pid = startDetached(
      netnsExec(c.namespace, [process.execPath, cli, "serve", o.inventoryDir, "--listen", `${c.address}:${c.port}`, "--state-dir", c.stateDir]),
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

export function readLabState(runDir: string): LabState | undefined {
  try {
    const s = JSON.parse(readFileSync(join(runDir, STATE_FILE), "utf8")) as LabState;
    return s.version === 1 ? s : undefined;
  } catch {
    return undefined;
  }
}

function writeLabState(runDir: string, s: LabState): void {
  const tmp = join(runDir, `${STATE_FILE}.tmp`);
  writeFileSync(tmp, JSON.stringify(s, null, 2) + "\n");
  renameSync(tmp, join(runDir, STATE_FILE));
}

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

/** Link names per namespace, one `ip -json link show` each. */
async function linkNames(x: LabExec, namespaces: string[]): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>();
  await Promise.all(
    namespaces.map(async (ns) => {
      const r = await x.read(["ip", "-n", ns, "-json", "link", "show"]);
      out.set(ns, new Set((JSON.parse(r.stdout || "[]") as { ifname: string }[]).map((l) => l.ifname)));
    }),
  );
  return out;
}

function ipBatch(lines: string[][]): string {
  return lines.map((l) => l.join(" ")).join("\n") + "\n";
}

/** Runs `ip [-n NS] -batch -` when there is anything to do. */
async function runBatch(x: LabExec, ns: string | undefined, lines: string[][]): Promise<void> {
  if (lines.length === 0) return;
  await x.run(["ip", ...(ns ? ["-n", ns] : []), "-batch", "-"], ipBatch(lines));
}

/** Builds (or repairs) the lab and returns its status. A second call on a running lab changes nothing. */
export async function labUp(o: LabOptions, log: (line: string) => void = () => {}): Promise<LabStatus> {
  const t0 = performance.now();
  const step = (what: string) => log(`[lab ${o.prefix}] ${Math.round(performance.now() - t0)} ms ${what}`);
  validateOptions(o);
  const control = o.control ?? "nats";
  const inventory = loadInventory(o.inventoryDir);
  const topo = buildTopology(inventory, o);
  const prev = readLabState(o.runDir);
  if (prev && prev.fingerprint !== topo.fingerprint) {
    step("topology changed since the last up: tearing the old lab down");
    await labDown(o);
  } else if (!prev && namespacesWithPrefix(o.prefix).length > 0) {
    step(`namespaces ${o.prefix}-* exist without ${STATE_FILE}: tearing them down first`);
    await labDown(o);
  }
  mkdirSync(join(o.runDir, "assignments"), { recursive: true });
  const state: LabState = {
    version: 1,
    prefix: o.prefix,
    runDir: o.runDir,
    inventoryDir: o.inventoryDir,
    fingerprint: topo.fingerprint,
    topology: topo,
    pids: prev?.fingerprint === topo.fingerprint ? prev.pids : {},
    agents: {},
    updatedAt: new Date().toISOString(),
  };
  writeLabState(o.runDir, state); // before anything exists, so a failed up can still be torn down
  const x = new LabExec();

  // 1. namespaces
  const missing = topo.namespaces.filter((n) => !namespaceExists(n));
  await Promise.all(
    missing.map(async (n) => {
      await x.run(["ip", "netns", "add", n]);
      await x.run(["ip", "-n", n, "link", "set", "dev", "lo", "up"]);
    }),
  );
  step("namespaces");

  // 2. links first (a vswitchd restarted on its old database must find its devices), then OVS;
  //    libvirtd meanwhile, as it needs no link
  const libvirtds = Promise.all(
    topo.hosts.map(async (h) => {
      if (h.libvirt) state.pids[`libvirtd@${h.namespace}`] = await ensureLibvirtd(x, h.namespace, h.libvirt, h.ovs.dir, step);
    }),
  );
  const network = (async () => {
    const built = await buildLinks(x, topo);
    step("links and VM namespaces");
    const ovs = [{ ns: topo.switchNs, paths: topo.switchOvs }, ...topo.hosts.map((h) => ({ ns: h.namespace, paths: h.ovs }))];
    await Promise.all(
      ovs.map(async ({ ns, paths }) => {
        const wasUp = Object.keys(ovsPids(paths)).length === 2;
        const restart = wasUp && built.renewedNamespaces.has(ns);
        if (restart) step(`restarting OVS of ${ns}: some of its links were created again`);
        recordOvs(state, ns, await ensureOvs(x, ns, paths, restart));
      }),
    );
    step("OVS");
    return built.newVmLinks;
  })();
  const settled = await Promise.allSettled([libvirtds, network]);
  for (const s of settled) if (s.status === "rejected") throw s.reason;
  const newVmLinks = await network;
  step("daemons");
  writeLabState(o.runDir, state);

  // 3. the switch: trunk ports carrying every VLAN of the site; a LAG running LACP towards a host whose uplink does
  await x.run(vsctl(topo.switchOvs.db, ...switchArgs(topo)));
  const lags = topo.hosts.filter((h) => h.switchLag).map((h) => `${h.name} (${h.switchLag!.port})`);
  step(`switch${lags.length > 0 ? `: LACP towards ${lags.join(", ")}` : ""}`);
  Object.assign(state.pids, await ensureInet(x, topo, INET_NAMES));
  step("internet: resolver and web servers");

  // 4. the agent on every host, backend first
  const assignments = new Map(compileSite(inventory).map((a) => [a.host, a]));
  const agentPidfile = (h: TopoHost) => join(h.agentDir, "agent.pid");
  const agentCli = productBin(o, "agent");
  const daemonRunning = (h: TopoHost) => runningIn(agentPidfile(h), agentCli, h.namespace) !== undefined;
  const runAgent = async (h: TopoHost, check = false): Promise<AgentSummary | undefined> => {
    const a = assignments.get(h.name);
    if (!a) throw new Error(`no assignment compiled for host ${h.name}`);
    const r = await new LabExec(120_000).probe(agentCommand(o, labHost(h), ["apply", "--assignment", h.assignmentFile, "--name", h.name, "--json", ...(check ? ["--check"] : [])]));
    const outFile = h.assignmentFile.replace(/\.json$/, check ? ".check.json" : ".apply.json");
    writeFileSync(outFile, r.stdout);
    let parsed: { summary?: AgentSummary; wallMs?: number; results?: { id: string; result: boolean | null; error?: string; comment?: string }[] } | undefined;
    try {
      parsed = JSON.parse(r.stdout) as typeof parsed;
    } catch {
      /* reported below */
    }
    state.agents[h.name] = { exitCode: r.exitCode, summary: parsed?.summary, wallMs: parsed?.wallMs, ...(check ? { check: true } : {}) };
    if (r.exitCode !== 0 && !(check && parsed?.summary && parsed.summary.failed === 0)) {
      const failed = (parsed?.results ?? []).filter((x) => x.result === false).map((x) => `  ${x.id}: ${x.error ?? x.comment ?? "failed"}`);
      const body = parsed ? failed.join("\n") : `--- stdout:\n${r.stdout}`;
      throw new Error(
        `netfleet-agent apply${check ? " --check" : ""} on ${h.name} exited ${r.exitCode} (full output: ${outFile})\n${body}${r.stderr.trim() ? `\n--- stderr:\n${r.stderr.trim()}` : ""}`,
      );
    }
    step(`agent ${h.name}${check ? " (check)" : ""}: ${JSON.stringify(parsed?.summary)} (${parsed?.wallMs} ms inside)`);
    return parsed?.summary;
  };
  /** A host whose agent daemon runs is left to it: wait (bounded) until a check finds nothing to do. */
  const converged = async (h: TopoHost) => {
    const until = Date.now() + 60_000;
    for (;;) {
      const s = await runAgent(h, true);
      if (s && s.pending === 0 && s.failed === 0) return;
      if (Date.now() > until) throw new Error(`the agent daemon on ${h.name} did not converge within 60 s (see ${join(h.agentDir, "agent.log")})`);
      await sleep(500);
    }
  };
  const converge = (h: TopoHost) => (daemonRunning(h) ? converged(h) : runAgent(h).then(() => undefined));
  for (const h of topo.hosts) {
    const text = JSON.stringify(assignments.get(h.name), null, 2) + "\n";
    if (!existsSync(h.assignmentFile) || readFileSync(h.assignmentFile, "utf8") !== text) writeFileSync(h.assignmentFile, text);
  }
  if (control === "nats") {
    // The fleet way: the controller service, agents that enroll with the site's join token,
    // and a rollout (backend first, canary, waves) of what the inventory says.
    Object.assign(state.pids, await ensureController(topo, o, step));
    const token = await controllerToken(topo, o);
    for (const h of topo.hosts) {
      let pid = runningIn(agentPidfile(h), agentCli, h.namespace);
      if (pid === undefined) {
        mkdirSync(h.agentDir, { recursive: true });
        writeFileSync(join(h.agentDir, "join-token"), `${token}\n`, { mode: 0o600 }); // a file, not argv: ps shows argv to everyone
        pid = startAgentDaemon(o, topo, h, "nats");
        step(`agent ${h.name} started (pid ${pid}), enrolling`);
      }
      state.pids[`netfleet-agent@${h.namespace}`] = pid;
    }
    writeLabState(o.runDir, state);
    await waitFor("every lab host enrolled and approved", 60_000, async () => {
      const r = await x.probe(controllerCommand(topo, o, ["hosts", "--json"]));
      if (r.exitCode !== 0) return false;
      const rows = (JSON.parse(r.stdout) as { hosts: { host: string; state: string }[] }).hosts;
      return topo.hosts.every((h) => rows.some((row) => row.host === h.name && row.state === "approved"));
    }, 500);
    step("agents enrolled");
    if (await fleetAtAssignments(x, topo, o, assignments)) {
      step("rollout: nothing to do (every host applied its current assignment, no drift)");
    } else {
      const rollout = await new LabExec(600_000).probe(controllerCommand(topo, o, ["rollout", o.inventoryDir]));
      for (const line of rollout.stdout.trimEnd().split("\n")) if (line) log(`  ${line}`);
      if (rollout.exitCode !== 0) throw new Error(`netfleet rollout ${o.inventoryDir} exited ${rollout.exitCode}${rollout.stderr.trim() ? `: ${rollout.stderr.trim()}` : ""}`);
      step("rollout done");
    }
    await Promise.all(topo.hosts.map(converged));
  } else {
    // The backend goes first (its gateways are what the VM hosts' traffic needs).
    for (const b of topo.hosts.filter((h) => h.role === "backend")) await converge(b);
    await Promise.all(topo.hosts.filter((h) => h.role !== "backend").map(converge));
  }
  writeLabState(o.runDir, state);

  // 5. plug the namespace VMs into their bridges, the way libvirt plugs a tap; the agent's
  //    vm-port-policy works from the VM ports it finds, so a host that got new ones converges again
  const replugged = await Promise.all(topo.hosts.map((h) => plugVms(x, topo, h, newVmLinks)));
  step("VMs plugged");
  await Promise.all(topo.hosts.filter((h, i) => replugged[i]).map(converge));

  // 6. (file mode) one agent daemon per host from now on: it follows OVS and libvirt events and the assignment file
  for (const h of control === "file" ? topo.hosts : []) {
    let pid = runningIn(agentPidfile(h), agentCli, h.namespace);
    if (pid === undefined) {
      pid = startAgentDaemon(o, topo, h, "file");
      step(`agent daemon on ${h.name} started (pid ${pid})`);
    }
    state.pids[`netfleet-agent@${h.namespace}`] = pid;
  }
  writeLabState(o.runDir, state);

  // 7. the VMs' side: a DHCP lease from the backend, then their services
  const leases = await Promise.all(
    namespaceVms(topo).map(async (v) => {
      const lease = readLease(v);
      const have = (await x.read(["ip", "-n", v.namespace, "-4", "-json", "address", "show", "dev", v.interface])).stdout;
      if (lease && have.includes(`"${lease.ip}"`)) return false;
      await dhcp(x, topo, v);
      return true;
    }),
  );
  step(`DHCP: ${leases.filter(Boolean).length} new leases`);
  Object.assign(state.pids, await ensureVmServices(x, topo));
  writeLabState(o.runDir, state);

  // 6. one defined (not started) domain per VM host
  await Promise.all(
    topo.domains.map(async (d) => {
      const h = topo.hosts.find((x) => x.name === d.host)!;
      await ensureDomain(x, h.libvirt!, d);
    }),
  );
  step("domains defined");
  state.updatedAt = new Date().toISOString();
  writeLabState(o.runDir, state);
  const status = await labStatus(o);
  step(status.up ? "up" : `NOT up: ${(status.problems ?? []).join("; ")}`);
  return status;
}

/**
 * Starts `netfleet-agent run` detached in the host's namespace, its pid in
 * `<agentDir>/agent.pid`, its output appended to `<agentDir>/agent.log`.
 * `nats`: it enrolls with the join token in `<agentDir>/join-token` (written
 * by lab up) and keeps its state in `<agentDir>/state`; `file`: it follows
 * the assignment file the lab writes. Returns its pid.
 */
function startAgentDaemon(o: LabOptions, t: Topology, h: TopoHost, control: "nats" | "file"): number {
  mkdirSync(h.agentDir, { recursive: true });
  const args =
    control === "nats"
      ? ["run", "--site", t.site, "--nats", t.controller.url, "--token-file", join(h.agentDir, "join-token"), "--name", h.name, "--state-dir", join(h.agentDir, "state")]
      : ["run", "--assignment", h.assignmentFile, "--name", h.name];
  return startDetached(agentCommand(o, labHost(h), args), join(h.agentDir, "agent.pid"), join(h.agentDir, "agent.log"));
}

function labHostOf(o: LabOptions, hostName: string): { state: LabState; t: Topology; h: TopoHost } {
  const state = readLabState(o.runDir);
  if (!state) throw new Error(`no lab in ${o.runDir} (run netfleet lab up)`);
  const h = state.topology.hosts.find((x) => x.name === hostName);
  if (!h) throw new Error(`lab ${o.prefix} has no host ${hostName}`);
  return { state, t: state.topology, h };
}

/**
 * Stops the agent daemon of one lab host (SIGTERM by the pid in its pidfile,
 * SIGKILL after 3 s), leaving the host as it is: the way an operator stops
 * the agent's unit. Returns the pid it stopped, or undefined when none ran.
 */
export async function labStopAgent(o: LabOptions, hostName: string): Promise<number | undefined> {
  const { h } = labHostOf(o, hostName);
  const pid = runningIn(join(h.agentDir, "agent.pid"), productBin(o, "agent"), h.namespace);
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
  const running = runningIn(join(h.agentDir, "agent.pid"), productBin(o, "agent"), h.namespace);
  const pid = running ?? startAgentDaemon(o, t, h, o.control ?? "nats");
  state.pids[`netfleet-agent@${h.namespace}`] = pid;
  writeLabState(o.runDir, state);
  return pid;
}

/**
 * Restarts Open vSwitch on one lab host the way a service restart (or a
 * crash and its supervisor) does: ovs-vswitchd and ovsdb-server stopped by
 * pid (SIGTERM, then SIGKILL), then started again on their database, so
 * bridges, ports and fail modes come back and OpenFlow rules do not.
 * Records the new pids in lab.json and returns them.
 */
export async function labRestartOvs(o: LabOptions, hostName: string): Promise<{ ovsdb?: number; vswitchd?: number }> {
  const { state, h } = labHostOf(o, hostName);
  const pids = await ensureOvs(new LabExec(), h.namespace, h.ovs, true);
  recordOvs(state, h.namespace, pids);
  writeLabState(o.runDir, state);
  return pids;
}

/**
 * Unplugs a namespace VM's host-side port from its bridge and plugs it again
 * in a second transaction, the way a VM restarted by libvirt gets a new
 * port: OVS gives it an OpenFlow port number of its own. Returns the port
 * numbers before and after (ovs-vsctl get Interface ofport).
 */
export async function labReplugVm(o: LabOptions, vmName: string): Promise<{ before: number; after: number }> {
  const state = readLabState(o.runDir);
  if (!state) throw new Error(`no lab in ${o.runDir} (run netfleet lab up)`);
  const t = state.topology;
  const v = namespaceVms(t).find((x) => x.name === vmName);
  if (!v) throw new Error(`lab ${o.prefix} has no namespace VM ${vmName}`);
  const h = t.hosts.find((x) => x.name === v.host)!;
  const x = new LabExec();
  const ofport = async () => Number((await x.read(vsctl(h.ovs.db, "get", "Interface", v.hostPort, "ofport"))).stdout.trim());
  const before = await ofport();
  await x.run(vsctl(h.ovs.db, "--if-exists", "del-port", v.bridge, v.hostPort));
  await x.run(vsctl(h.ovs.db, ...plugArgs(t, v)));
  let after = await ofport();
  for (let i = 0; i < 40 && !(after > 0); i++) {
    await sleep(25);
    after = await ofport();
  }
  return { before, after };
}

/** Adds the host's VM ports (with libvirt's Interface external_ids); true when any was missing or its link new. */
async function plugVms(x: LabExec, topo: Topology, h: TopoHost, newLinks: Set<string>): Promise<boolean> {
  const vms = namespaceVms(topo).filter((v) => v.host === h.name);
  if (vms.length === 0) return false;
  const present = new Set((await x.read(vsctl(h.ovs.db, "--bare", "--columns=name", "list", "Interface"))).stdout.split("\n").map((l) => l.trim()));
  await x.run(vsctl(h.ovs.db, ...vms.flatMap((v) => plugArgs(topo, v))));
  return vms.some((v) => !present.has(v.hostPort) || newLinks.has(v.name));
}

/**
 * The inventory's VMs and the lab's stranger namespaces: everything that is
 * a namespace plugged into a VM bridge. `strangers` is absent in a lab.json
 * written before strangers existed.
 */
export function namespaceVms(t: Topology): TopoVm[] {
  return [...t.vms, ...(t.strangers ?? [])];
}

/**
 * ovs-vsctl arguments (one `--`-joined piece of a transaction) that plug a
 * namespace VM's host-side veth into its bridge the way libvirt plugs a tap:
 * Interface external_ids attached-mac (the guest MAC), vm-id and iface-id;
 * the Port is marked as the lab's (`netfleet-lab=vm` or `stranger`).
 */
function plugArgs(t: Topology, v: TopoVm): string[] {
  const role = (t.strangers ?? []).some((s) => s.name === v.name) ? "stranger" : "vm";
  return [
    "--", "--may-exist", "add-port", v.bridge, v.hostPort,
    "--", "set", "Interface", v.hostPort, `external_ids:attached-mac="${v.mac}"`, `external_ids:vm-id=${v.name}`, `external_ids:iface-id=${v.name}`,
    "--", "set", "Port", v.hostPort, `external_ids:netfleet-lab=${role}`,
  ];
}

function recordOvs(state: LabState, ns: string, pids: { ovsdb?: number; vswitchd?: number }): void {
  if (pids.ovsdb !== undefined) state.pids[`ovsdb-server@${ns}`] = pids.ovsdb;
  if (pids.vswitchd !== undefined) state.pids[`ovs-vswitchd@${ns}`] = pids.vswitchd;
}

/**
 * Creates the missing veths (one `ip -batch` in the root namespace), then
 * sets every link up and addressed. Returns the VMs whose link was created.
 */
async function buildLinks(x: LabExec, t: Topology): Promise<{ newVmLinks: Set<string>; renewedNamespaces: Set<string> }> {
  const sw = t.switchNs;
  const backend = t.hosts.find((h) => h.role === "backend");
  const have = await linkNames(x, t.namespaces);
  const has = (ns: string, name: string) => have.get(ns)?.has(name) ?? false;
  const create: string[][] = [];
  const renewedNamespaces = new Set<string>();
  const veth = (nsA: string, a: string, nsB: string, b: string, bOpts: string[] = []) => {
    if (has(nsA, a) && has(nsB, b)) return;
    renewedNamespaces.add(nsA).add(nsB);
    // a half pair cannot exist for a veth; whatever holds the name is not ours to keep
    if (has(nsA, a)) create.push(["-n", nsA, "link", "del", "dev", a]);
    if (has(nsB, b)) create.push(["-n", nsB, "link", "del", "dev", b]);
    create.push(["link", "add", a, "netns", nsA, "type", "veth", "peer", "name", b, ...bOpts, "netns", nsB]);
  };
  for (const h of t.hosts) {
    for (const l of h.trunkLinks) veth(h.namespace, l.hostIf, sw, l.switchIf);
    veth(h.namespace, h.mgmtLink.hostIf, sw, h.mgmtLink.switchIf);
  }
  if (backend) veth(backend.namespace, t.inet.hostIf, t.inet.namespace, t.inet.inetIf);
  const newVmLinks = new Set<string>();
  for (const v of namespaceVms(t)) {
    if (!has(v.hostNs, v.hostPort) || !has(v.namespace, v.interface)) newVmLinks.add(v.name);
    veth(v.hostNs, v.hostPort, v.namespace, v.interface, ["address", v.mac]);
  }
  // `ip -batch` takes `-n` only as a global option: run deletions through per-namespace calls
  const deletions = create.filter((l) => l[0] === "-n");
  for (const d of deletions) await x.run(["ip", ...d]);
  await runBatch(x, undefined, create.filter((l) => l[0] !== "-n"));

  const jobs: Promise<void>[] = [];
  const swLines: string[][] = [];
  if (!has(sw, t.mgmtBridge)) swLines.push(["link", "add", t.mgmtBridge, "type", "bridge", "stp_state", "0"]);
  swLines.push(["link", "set", "dev", t.mgmtBridge, "up"]);
  swLines.push(["address", "replace", `${t.controller.address}/${t.controller.prefix}`, "dev", t.mgmtBridge]);
  for (const h of t.hosts) {
    for (const l of h.trunkLinks) swLines.push(["link", "set", "dev", l.switchIf, "up"]);
    swLines.push(["link", "set", "dev", h.mgmtLink.switchIf, "master", t.mgmtBridge], ["link", "set", "dev", h.mgmtLink.switchIf, "up"]);
    const lines: string[][] = h.trunkLinks.map((l) => ["link", "set", "dev", l.hostIf, "up"]);
    lines.push(["link", "set", "dev", h.mgmtLink.hostIf, "up"]);
    if (h.mgmtAddress) lines.push(["address", "replace", h.mgmtAddress, "dev", h.mgmtLink.hostIf]);
    if (h === backend) {
      lines.push(["link", "set", "dev", t.inet.hostIf, "up"]);
      lines.push(["address", "replace", `${t.inet.hostAddress}/${t.inet.prefix}`, "dev", t.inet.hostIf]);
      lines.push(["route", "replace", "default", "via", t.inet.gateway, "dev", t.inet.hostIf]);
    }
    for (const v of namespaceVms(t).filter((v) => v.host === h.name)) lines.push(["link", "set", "dev", v.hostPort, "up"]);
    jobs.push(runBatch(x, h.namespace, lines));
  }
  jobs.push(runBatch(x, sw, swLines));
  jobs.push(
    runBatch(x, t.inet.namespace, [
      ["link", "set", "dev", t.inet.inetIf, "up"],
      ["link", "set", "dev", "lo", "up"],
      ...t.inet.inetAddresses.map((a) => ["address", "replace", `${a}/${t.inet.prefix}`, "dev", t.inet.inetIf]),
      // the web servers sit beyond the router: reached through the backend's default route
      ...t.inet.web.map((a) => ["address", "replace", `${a}/32`, "dev", "lo"]),
    ]),
  );
  for (const v of namespaceVms(t)) jobs.push(configureVm(x, v));
  const settled = await Promise.allSettled(jobs);
  for (const s of settled) if (s.status === "rejected") throw s.reason;
  return { newVmLinks, renewedNamespaces };
}

/**
 * The VM side: MAC, link up, TX checksum offload off (the netdev datapath
 * drops TCP/UDP with partial checksums from a veth). The address comes
 * later, by DHCP from the backend.
 */
async function configureVm(x: LabExec, v: TopoVm): Promise<void> {
  await runBatch(x, v.namespace, [
    ["link", "set", "dev", v.interface, "address", v.mac],
    ["link", "set", "dev", v.interface, "up"],
  ]);
  await x.run(netnsExec(v.namespace, ["ethtool", "-K", v.interface, "tx", "off"]));
}

/** Live state of the lab described by runDir/lab.json: namespaces, daemons, VM links and domains. */
export async function labStatus(o: LabOptions): Promise<LabStatus> {
  validateOptions(o);
  const state = readLabState(o.runDir);
  const base = { prefix: o.prefix, runDir: o.runDir };
  if (!state) return { up: false, ...base, hosts: [], vms: [], problems: [`no ${STATE_FILE} in ${o.runDir}`] };
  const t = state.topology;
  const x = new LabExec(10_000);
  const problems: string[] = [];
  for (const n of t.namespaces) if (!namespaceExists(n)) problems.push(`namespace ${n} missing`);
  const ovsUp = new Map<string, boolean>();
  for (const [ns, paths] of [[t.switchNs, t.switchOvs], ...t.hosts.map((h) => [h.namespace, h.ovs] as const)] as const) {
    const p = ovsPids(paths);
    if (p.ovsdb === undefined) problems.push(`ovsdb-server of ${ns} not running`);
    if (p.vswitchd === undefined) problems.push(`ovs-vswitchd of ${ns} not running`);
    else if (!pidInNetns(p.vswitchd, ns)) problems.push(`ovs-vswitchd of ${ns} runs outside that namespace`);
    ovsUp.set(ns, p.ovsdb !== undefined && p.vswitchd !== undefined);
  }
  const lvUp = new Map<string, boolean>();
  for (const h of t.hosts) {
    if (!h.libvirt) continue;
    const pid = libvirtdPid(h.libvirt);
    const alive = pid !== undefined;
    if (!alive) problems.push(`libvirtd of ${h.namespace} not running`);
    else if (!pidInNetns(pid, h.namespace)) problems.push(`libvirtd of ${h.namespace} runs outside that namespace`);
    lvUp.set(h.name, alive);
  }
  for (const h of t.hosts) {
    if (runningIn(join(h.agentDir, "agent.pid"), productBin(o, "agent"), h.namespace) === undefined) problems.push(`agent daemon of ${h.name} not running`);
  }
  const strangerNames = new Set((t.strangers ?? []).map((s) => s.name));
  const vms: LabVm[] = await Promise.all(
    namespaceVms(t).map(async (v): Promise<LabVm> => {
      const kind = strangerNames.has(v.name) ? "stranger" : "namespace";
      const out: LabVm = { name: v.name, host: v.host, network: v.network, namespace: v.namespace, interface: v.interface, hostPort: v.hostPort, mac: v.mac, kind };
      if (!namespaceExists(v.namespace)) return out;
      const r = await x.probe(["ip", "-n", v.namespace, "-json", "address", "show", "dev", v.interface]);
      if (r.exitCode !== 0) {
        problems.push(`VM ${v.name}: no ${v.interface}`);
        return out;
      }
      const info = (JSON.parse(r.stdout || "[]") as { operstate?: string; address?: string; addr_info?: { family: string; local: string }[] }[])[0];
      const ip = info?.addr_info?.find((a) => a.family === "inet")?.local;
      if (ip) out.ip = ip;
      const lease = readLease(v);
      if (lease) out.lease = { ip: lease.ip, router: lease.router, dns: lease.dns, domain: lease.domain, server: lease.serverid, seconds: Number(lease.lease) };
      if (!lease) problems.push(`VM ${v.name}: no DHCP lease`);
      else if (lease.ip !== ip) problems.push(`VM ${v.name}: leased ${lease.ip} but holds ${ip ?? "no address"}`);
      out.state = info?.operstate?.toLowerCase() ?? "unknown";
      if (out.state !== "up") problems.push(`VM ${v.name}: ${v.interface} is ${out.state}`);
      if (ovsUp.get(v.hostNs)) {
        const host = t.hosts.find((h) => h.name === v.host)!;
        const br = await x.probe(vsctl(host.ovs.db, "port-to-br", v.hostPort));
        if (br.stdout.trim() !== v.bridge) problems.push(`VM ${v.name}: port ${v.hostPort} not on ${v.bridge}`);
      }
      return out;
    }),
  );
  const domains: LabVm[] = await Promise.all(
    t.domains.map(async (d): Promise<LabVm> => {
      const h = t.hosts.find((x) => x.name === d.host)!;
      const out: LabVm = { name: d.name, host: d.host, network: d.network, namespace: d.hostNs, interface: "eth0", hostPort: "", mac: d.mac, kind: "domain" };
      if (!lvUp.get(d.host)) return out;
      const s = await domainState(x, h.libvirt!.uri, d.name);
      out.hostPort = s.hostPort;
      if (s.state === undefined) problems.push(`domain ${d.name} not defined`);
      else out.state = s.state;
      return out;
    }),
  );
  const inet = { namespace: t.inet.namespace, backendAddress: t.inet.hostAddress, web: t.inet.web, resolver: t.inet.resolver, names: Object.fromEntries(INET_NAMES) };
  const gateways = await gatewaysOf(x, t, problems);
  const lags = ovsUp.get(t.switchNs) ? await lagsOf(x, t, problems) : [];
  const status: LabStatus = { up: problems.length === 0, ...base, hosts: t.hosts.map(labHost), vms: [...vms, ...domains], inet, gateways, ...(lags.length > 0 ? { lags } : {}) };
  if (problems.length > 0) status.problems = problems;
  return status;
}

/**
 * Each network's gateway as the backend holds it: the interface that carries
 * the gateway address in the backend's namespace and its MAC (one
 * `ip -json address show` there). A network whose gateway address is on no
 * interface is a problem of the lab.
 */
async function gatewaysOf(x: LabExec, t: Topology, problems: string[]): Promise<LabGateway[]> {
  const backend = t.hosts.find((h) => h.role === "backend");
  if (!backend || !namespaceExists(backend.namespace) || !t.networks) return [];
  const r = await x.probe(["ip", "-n", backend.namespace, "-json", "address", "show"]);
  if (r.exitCode !== 0) return [];
  const links = JSON.parse(r.stdout || "[]") as { ifname: string; address?: string; addr_info?: { family: string; local: string }[] }[];
  const out: LabGateway[] = [];
  for (const n of t.networks) {
    const link = links.find((l) => l.addr_info?.some((a) => a.family === "inet" && a.local === n.gateway));
    if (!link?.address) {
      problems.push(`gateway ${n.gateway} of ${n.name} is on no interface of ${backend.namespace}`);
      continue;
    }
    out.push({ network: n.name, vlan: n.vlan, ip: n.gateway, mac: link.address.toLowerCase(), namespace: backend.namespace, interface: link.ifname });
  }
  return out;
}

const KNOWN_DAEMONS = new Set(["ovsdb-server", "ovs-vswitchd", "libvirtd", "qemu-system-x86", "dnsmasq", "node", "MainThread"]);

/**
 * Removes everything the lab made: its processes (pidfiles, then anything
 * inside its namespaces or referring to its run dir), every namespace named
 * `<prefix>-*`, and the run dir. Throws if something is left.
 */
export async function labDown(o: LabOptions): Promise<void> {
  validateOptions(o);
  const state = readLabState(o.runDir);
  const namespaces = new Set(namespacesWithPrefix(o.prefix));
  for (const n of state?.topology.namespaces ?? []) if (namespaceExists(n)) namespaces.add(n);

  // Orderly first: domains and libvirtd, then OVS, by their pidfiles.
  if (state) {
    const t = state.topology;
    await Promise.all(t.hosts.map(async (h) => (h.libvirt ? stopLibvirtd(h.libvirt) : undefined)));
    await Promise.all([t.switchOvs, ...t.hosts.map((h) => h.ovs)].map((p) => stopOvs(p)));
  }
  // Then every pidfile under the run dir that names a daemon of ours, and whatever else is ours.
  const pids = new Set<number>();
  for (const f of pidfilesUnder(o.runDir)) {
    const pid = readPidfile(f);
    if (pid !== undefined && isAlive(pid) && KNOWN_DAEMONS.has(comm(pid))) pids.add(pid);
  }
  const inodes = new Set([...namespaces].map(netnsInode).filter((i): i is number => i !== undefined));
  for (const p of labProcesses({ netnsInodes: inodes, runDir: o.runDir })) pids.add(p.pid);
  const stubborn = await terminate([...pids]);
  if (stubborn.length > 0) throw new Error(`lab ${o.prefix}: processes ${stubborn.join(", ")} survived SIGKILL`);

  const x = new LabExec(10_000);
  await Promise.all([...namespaces].map((n) => x.probe(["ip", "netns", "delete", n])));
  for (let i = 0; i < 40 && namespacesWithPrefix(o.prefix).length > 0; i++) await sleep(25);

  if (existsSync(o.runDir)) {
    const foreign = readdirSync(o.runDir).filter((e) => !RUNDIR_ENTRIES.has(e));
    if (foreign.length > 0) throw new Error(`lab ${o.prefix}: ${o.runDir} holds ${foreign.join(", ")}, which the lab did not make; not deleting it`);
    rmSync(o.runDir, { recursive: true, force: true });
  }
  const leftNs = namespacesWithPrefix(o.prefix);
  const leftProcs = labProcesses({ netnsInodes: new Set(), runDir: o.runDir });
  if (leftNs.length > 0 || leftProcs.length > 0 || existsSync(o.runDir)) {
    throw new Error(
      `lab ${o.prefix} not fully down: namespaces [${leftNs.join(", ")}], processes [${leftProcs.map((p) => `${p.pid} ${p.comm}`).join(", ")}], runDir ${existsSync(o.runDir) ? "present" : "gone"}`,
    );
  }
}

function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "";
  }
}

function pidfilesUnder(dir: string, depth = 0): string[] {
  if (depth > 8 || !existsSync(dir)) return [];
  const out: string[] = [];
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory() && !e.isSymbolicLink()) out.push(...pidfilesUnder(p, depth + 1));
    else if (e.isFile() && e.name.endsWith(".pid")) out.push(p);
  }
  return out;
}


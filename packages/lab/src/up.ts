/**
 * `lab up` as named steps, run in order by one runner that records the
 * state (runDir/lab.json) after each: a failed up leaves what it built
 * recorded, so `lab down` can take it away. Every step keeps what already
 * runs: a second up on a running lab changes nothing.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { compileSite } from "@netfleet/controller";
import { loadInventory, type HostAssignment, type Inventory } from "@netfleet/shared";
import { agentDaemonPid, controllerCommand, ROLLOUT_CONFIRM, controllerHostToken, ensureController, fleetAtAssignments, startAgentDaemon, writeJoinToken } from "./agents.ts";
import { converge, converged } from "./converge.ts";
import { labDown } from "./down.ts";
import { LabExec, vsctl, waitFor } from "./exec.ts";
import { ensureDomain, ensureLibvirtd } from "./libvirt.ts";
import { buildLinks } from "./links.ts";
import { ensureOvs, ovsPids } from "./ovs.ts";
import { namespaceExists, namespacesWithPrefix } from "./procs.ts";
import { dhcp, ensureInet, ensureVmServices, INET_NAMES, readLease } from "./services.ts";
import { readLabState, recordOvs, STATE_FILE, writeLabState, type LabState } from "./state.ts";
import { labStatus } from "./status.ts";
import { switchArgs } from "./switch.ts";
import { validateOptions } from "./paths.ts";
import { buildTopology, type Topology } from "./topology.ts";
import type { LabOptions, LabStatus } from "./types.ts";
import { namespaceVms, plugVms } from "./vms.ts";

/** What the steps of one `lab up` share. */
interface Up {
  o: LabOptions;
  control: "nats" | "file";
  inventory: Inventory;
  topo: Topology;
  state: LabState;
  x: LabExec;
  /** The rollout's own lines go to the log as they are. */
  log: (line: string) => void;
  /** A progress line: `[lab <prefix>] <ms since start> ms <what>`. */
  step: (what: string) => void;
  /** Each host's assignment as the controller compiles it (filled by the `agents` step). */
  assignments: Map<string, HostAssignment>;
  /** VMs whose veth was created by this up (set by the `daemons` step): their ports must be plugged anew. */
  newVmLinks: Set<string>;
}

interface UpStep {
  name: string;
  run(up: Up): Promise<void>;
}

/** The steps of `lab up`, in order. */
const UP_STEPS: UpStep[] = [
  { name: "namespaces", run: namespaces },
  { name: "daemons", run: daemons },
  { name: "switch", run: labSwitch },
  { name: "internet", run: internet },
  { name: "agents", run: agents },
  { name: "VM ports", run: vmPorts },
  { name: "agent daemons", run: agentDaemons },
  { name: "DHCP", run: leases },
  { name: "VM services", run: vmServices },
  { name: "domains", run: domains },
];

/** Builds (or repairs) the lab and returns its status. A second call on a running lab changes nothing. */
export async function labUp(o: LabOptions, log: (line: string) => void = () => {}): Promise<LabStatus> {
  const up = await prepare(o, log);
  for (const s of UP_STEPS) {
    try {
      await s.run(up);
    } catch (err) {
      up.step(`step ${s.name} failed`);
      throw err;
    }
    writeLabState(o.runDir, up.state);
  }
  up.state.updatedAt = new Date().toISOString();
  writeLabState(o.runDir, up.state);
  const status = await labStatus(o);
  up.step(status.up ? "up" : `NOT up: ${(status.problems ?? []).join("; ")}`);
  return status;
}

/**
 * Reads the inventory and the last up's state; a lab of another topology,
 * or namespaces of the prefix without a state, are torn down first. Writes
 * the state before anything exists, so a failed up can still be torn down.
 */
async function prepare(o: LabOptions, log: (line: string) => void): Promise<Up> {
  const t0 = performance.now();
  const step = (what: string) => log(`[lab ${o.prefix}] ${Math.round(performance.now() - t0)} ms ${what}`);
  validateOptions(o);
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
  writeLabState(o.runDir, state);
  return { o, control: o.control ?? "nats", inventory, topo, state, x: new LabExec(), log, step, assignments: new Map(), newVmLinks: new Set() };
}

/** Every namespace of the topology, with its loopback up. */
async function namespaces({ topo, x, step }: Up): Promise<void> {
  const missing = topo.namespaces.filter((n) => !namespaceExists(n));
  await Promise.all(
    missing.map(async (n) => {
      await x.run(["ip", "netns", "add", n]);
      await x.run(["ip", "-n", n, "link", "set", "dev", "lo", "up"]);
    }),
  );
  step("namespaces");
}

/**
 * Links first (a vswitchd restarted on its old database must find its
 * devices), then OVS in each namespace; libvirtd meanwhile, as it needs no link.
 */
async function daemons(up: Up): Promise<void> {
  const { topo, x, state, step } = up;
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
  up.newVmLinks = await network;
  step("daemons");
}

/** The switch: trunk ports carrying every VLAN of the site; a LAG running LACP towards a host whose uplink does. */
async function labSwitch({ topo, x, step }: Up): Promise<void> {
  await x.run(vsctl(topo.switchOvs.db, ...switchArgs(topo)));
  const lags = topo.hosts.filter((h) => h.switchLag).map((h) => `${h.name} (${h.switchLag!.port})`);
  step(`switch${lags.length > 0 ? `: LACP towards ${lags.join(", ")}` : ""}`);
}

/** The lab's "internet": its upstream resolver and web servers. */
async function internet({ topo, x, state, step }: Up): Promise<void> {
  Object.assign(state.pids, await ensureInet(x, topo, INET_NAMES));
  step("internet: resolver and web servers");
}

/**
 * Each host's assignment, compiled by the controller and written to its
 * assignment file, brought onto the host: in `nats` mode the fleet way (the
 * controller service, agents that enroll with the site's join token, a
 * rollout), in `file` mode by `netfleet-agent apply`, the backend first (its
 * gateways are what the VM hosts' traffic needs).
 */
async function agents(up: Up): Promise<void> {
  const { topo } = up;
  up.assignments = new Map(compileSite(up.inventory).map((a) => [a.host, a]));
  for (const h of topo.hosts) {
    const text = JSON.stringify(up.assignments.get(h.name), null, 2) + "\n";
    if (!existsSync(h.assignmentFile) || readFileSync(h.assignmentFile, "utf8") !== text) writeFileSync(h.assignmentFile, text);
  }
  if (up.control === "nats") {
    await fleetRollout(up);
  } else {
    for (const b of topo.hosts.filter((h) => h.role === "backend")) await converge(up, b);
    await Promise.all(topo.hosts.filter((h) => h.role !== "backend").map((h) => converge(up, h)));
  }
}

/** `netfleet serve`, an enrolled agent daemon per host, then `netfleet rollout` unless every host already applied its assignment. */
async function fleetRollout(up: Up): Promise<void> {
  const { o, topo, x, state, step } = up;
  Object.assign(state.pids, await ensureController(topo, o, step));
  for (const h of topo.hosts) {
    let pid = agentDaemonPid(o, h);
    if (pid === undefined) {
      // A host token per host (single use, bound to its name): approved at once. The site's join token would only queue a claim.
      await writeJoinToken(h, await controllerHostToken(topo, o, h.name));
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
  if (await fleetAtAssignments(x, topo, o, up.assignments)) {
    step("rollout: nothing to do (every host applied its current assignment, no drift)");
  } else {
    const rollout = await new LabExec(600_000).probe(controllerCommand(topo, o, ["rollout", o.inventoryDir, ...ROLLOUT_CONFIRM]));
    for (const line of rollout.stdout.trimEnd().split("\n")) if (line) up.log(`  ${line}`);
    if (rollout.exitCode !== 0) throw new Error(`netfleet rollout ${o.inventoryDir} exited ${rollout.exitCode}${rollout.stderr.trim() ? `: ${rollout.stderr.trim()}` : ""}`);
    step("rollout done");
  }
  await Promise.all(topo.hosts.map((h) => converged(up, h)));
}

/**
 * The namespace VMs plugged into their bridges, the way libvirt plugs a tap;
 * the agent's vm-port-policy works from the VM ports it finds, so a host
 * that got new ones converges again.
 */
async function vmPorts(up: Up): Promise<void> {
  const { topo, x, step } = up;
  const replugged = await Promise.all(topo.hosts.map((h) => plugVms(x, topo, h, up.newVmLinks)));
  step("VMs plugged");
  await Promise.all(topo.hosts.filter((h, i) => replugged[i]).map((h) => converge(up, h)));
}

/** (file mode) one agent daemon per host from now on: it follows OVS and libvirt events and the assignment file. */
async function agentDaemons({ o, control, topo, state, step }: Up): Promise<void> {
  for (const h of control === "file" ? topo.hosts : []) {
    let pid = agentDaemonPid(o, h);
    if (pid === undefined) {
      pid = startAgentDaemon(o, topo, h, "file");
      step(`agent daemon on ${h.name} started (pid ${pid})`);
    }
    state.pids[`netfleet-agent@${h.namespace}`] = pid;
  }
}

/** A DHCP lease from the backend for every namespace VM that holds none (or not its leased address). */
async function leases({ topo, x, step }: Up): Promise<void> {
  const fresh = await Promise.all(
    namespaceVms(topo).map(async (v) => {
      const lease = readLease(v);
      const have = (await x.read(["ip", "-n", v.namespace, "-4", "-json", "address", "show", "dev", v.interface])).stdout;
      if (lease && have.includes(`"${lease.ip}"`)) return false;
      await dhcp(x, topo, v);
      return true;
    }),
  );
  step(`DHCP: ${fresh.filter(Boolean).length} new leases`);
}

/** The VMs' TCP services. */
async function vmServices({ topo, x, state }: Up): Promise<void> {
  Object.assign(state.pids, await ensureVmServices(x, topo));
}

/** One defined (not started) libvirt domain per VM host. */
async function domains({ topo, x, step }: Up): Promise<void> {
  await Promise.all(
    topo.domains.map(async (d) => {
      const h = topo.hosts.find((x) => x.name === d.host)!;
      await ensureDomain(x, h.libvirt!, d);
    }),
  );
  step("domains defined");
}

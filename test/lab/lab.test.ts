/**
 * Lab tier: one lab (hosts and VMs as namespaces, one OVS and libvirtd per
 * host, the agent daemon on every host, the backend's dnsmasq and nftables,
 * an "internet" namespace) built once for this file, real traffic through
 * it, torn down at the end. Needs root and the packages of scripts/setup.sh.
 * The playground rows (playground-rows.ts) run in this lab too, before down.
 */
import { execa, type ResultPromise } from "execa";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { ExecaRunner, read, type Runner } from "@netfleet/agent";
import { loadInventory, type HostView, type Inventory } from "@netfleet/shared";
import { playgroundRows } from "./playground-rows.ts";
import { agentCommand, connectivityProbes, controllerCommand, labDown, LABNET, labProcesses, labStartAgent, labStatus, labStopAgent, labUp, namespacesWithPrefix, readLabState, readPidfile, runProbes, type CheckRow, type LabOptions, type LabStatus } from "@netfleet/lab";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const lab: LabOptions = {
  inventoryDir: join(repoRoot, "inventories", "lab"),
  prefix: "nft",
  runDir: "/tmp/nft-lab",
  repoRoot: process.env.NETFLEET_LAB_AGENT_ROOT ?? repoRoot,
};
const inventory: Inventory = loadInventory(lab.inventoryDir);
const runner = new ExecaRunner({ timeoutMs: 20_000 });
const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Rows of lab check's one-way phase (captures at the target), which share one wall time. */
const oneWayChecks = /^(isolated port|vlans apart|networks apart|only its own gateway|anti-spoofing|egress \(allowlist\)|egress icmp \(allowlist\))/;

async function sh(argv: string[]): Promise<{ stdout: string; exitCode: number }> {
  const r = await runner.run(read(...argv), { allowFailure: true });
  return { stdout: r.stdout, exitCode: r.exitCode };
}

async function ping(namespace: string, address: string): Promise<boolean> {
  return (await sh(["ip", "netns", "exec", namespace, "ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", address])).exitCode === 0;
}

/** Polls until `check` holds; every wait in this file is bounded. */
async function eventually(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(250);
  }
}

/** A copy of the lab inventory in which vma1 may also reach 198.51.100.20 (removed when the test that asked for it finishes). */
function wideInventory(): string {
  const dir = mkdtempSync(join(tmpdir(), "nft-inventory-"));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(lab.inventoryDir, dir, { recursive: true });
  const file = join(dir, "networks.yaml");
  const text = readFileSync(file, "utf8");
  const entry = "        allow:\n          - to: 198.51.100.10\n";
  if (!text.includes(entry)) throw new Error(`inventories/lab/networks.yaml no longer holds vma1's allow entry as ${JSON.stringify(entry)}`);
  writeFileSync(file, text.replace(entry, `${entry}          - to: 198.51.100.20\n`));
  return dir;
}

describe.skipIf(!isRoot)("lab tier (prefix nft, /tmp/nft-lab)", () => {
  let status: LabStatus;
  let rows: CheckRow[];
  const timings: Record<string, number> = {};
  const host = (name: string) => status.hosts.find((h) => h.name === name)!;
  const vm = (name: string) => status.vms.find((v) => v.name === name)!;
  const flows = async (hostName: string, bridge: string) =>
    (await sh(["ovs-ofctl", "dump-flows", `unix:${host(hostName).ovsRundir}/${bridge}.mgmt`, "--no-stats"])).stdout;
  const rollout = (inventoryDir: string) => sh(controllerCommand(readLabState(lab.runDir)!.topology, lab, ["rollout", inventoryDir, "--yes"]));
  const agentPid = (hostName: string) => readPidfile(join(host(hostName).agentDir, "agent.pid"));
  const dnsmasqPids = () =>
    Object.fromEntries(inventory.networks.map((n) => [n.name, readPidfile(join(host("backend").agentDir, "dnsmasq", `${n.name}.pid`))]));

  /** What lab check's one-way phase changes for a moment is back: each VM's MAC, its one address, no on-link route or permanent neighbour. */
  const vmsAsTheyWere = async () => {
    for (const v of status.vms.filter((x) => x.kind !== "domain" && x.ip)) {
      const link = (JSON.parse((await sh(["ip", "-n", v.namespace, "-j", "addr", "show", "dev", v.interface])).stdout) as { address: string; addr_info: { family: string; local: string }[] }[])[0]!;
      expect([link.address, link.addr_info.filter((a) => a.family === "inet").map((a) => a.local)], v.name).toEqual([v.mac, [v.ip]]);
      expect((await sh(["ip", "-n", v.namespace, "route", "show", "scope", "link"])).stdout, v.name).not.toMatch(/^\d+\.\d+\.\d+\.\d+ dev/m);
      expect((await sh(["ip", "-n", v.namespace, "neigh", "show", "nud", "permanent"])).stdout.trim(), v.name).toBe("");
    }
  };

  beforeAll(async () => {
    await labDown(lab); // leftovers of an interrupted run
    const t = performance.now();
    status = await labUp(lab, (line) => process.stderr.write(`${line}\n`));
    timings.up = performance.now() - t;
  }, 240_000);

  afterAll(async () => {
    await labDown(lab);
    process.stderr.write(`lab timings (ms): ${JSON.stringify(Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, Math.round(v)])))}\n`);
  }, 60_000);

  it("is up: 3 hosts with agent daemons, every inventory VM as a namespace with its DHCP lease, one domain per VM host", () => {
    expect(status.problems ?? []).toEqual([]);
    expect(status.up).toBe(true);
    expect(status.hosts.map((h) => [h.name, h.role, h.namespace])).toEqual([
      ["backend", "backend", "nft-backend"],
      ["hosta", "vmhost", "nft-hosta"],
      ["hostb", "vmhost", "nft-hostb"],
    ]);
    const invVms = inventory.networks.flatMap((n) => n.vms.map((v) => ({ ...v, network: n.name, net: n })));
    const nsVms = status.vms.filter((v) => v.kind === "namespace");
    expect(nsVms.map((v) => v.name).sort()).toEqual(invVms.map((v) => v.name).sort());
    for (const v of nsVms) {
      const inv = invVms.find((x) => x.name === v.name)!;
      expect(v).toMatchObject({ host: inv.host, network: inv.network, namespace: `nft-${v.name}`, interface: "eth0", mac: inv.mac.toLowerCase(), state: "up" });
      expect(v.lease, `${v.name} holds a lease`).toMatchObject({ router: inv.net.gateway, dns: inv.net.gateway, server: inv.net.gateway });
      if (inv.ip) expect(v.ip).toBe(inv.ip);
      else expect(v.ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    }
    expect(status.vms.filter((v) => v.kind === "domain").map((d) => [d.name, d.host, d.state])).toEqual([
      ["dom-hosta", "hosta", "shut off"],
      ["dom-hostb", "hostb", "shut off"],
    ]);
  });

  it("was rolled out over NATS: every agent enrolled, at its desired revision, without drift", async () => {
    const r = await sh(controllerCommand(readLabState(lab.runDir)!.topology, lab, ["status", "--json"]));
    expect(r.exitCode, r.stdout).toBe(0);
    const hosts = (JSON.parse(r.stdout) as { hosts: { host: string; enrolled: boolean; state: string; drift: boolean; desired: { revision: number } | null; applied: { revision: number } | null }[] }).hosts;
    expect(hosts.map((h) => h.host).sort()).toEqual(["backend", "hosta", "hostb"]);
    for (const h of hosts) {
      expect(h, h.host).toMatchObject({ enrolled: true, state: "approved", drift: false });
      expect(h.applied?.revision, h.host).toBe(h.desired?.revision);
    }
  });

  it("netfleet show: each VM host's agent reports its VM ports with the addresses its rules allow (real OVS), the backend its leases and allow sets; showing changes nothing", async () => {
    const before = await flows("hosta", "br-secure");
    expect(before).toContain("dl_src=");
    const r = await sh(controllerCommand(readLabState(lab.runDir)!.topology, lab, ["show", "--limit", "backend,hosta,hostb", "--json"]));
    expect(r.exitCode, r.stdout).toBe(0);
    const hosts = (JSON.parse(r.stdout) as { hosts: { host: string; ok: boolean; view: HostView }[] }).hosts;
    expect(hosts.map((h) => [h.host, h.ok])).toEqual([["backend", true], ["hosta", true], ["hostb", true]]);
    for (const v of status.vms.filter((x) => x.kind === "namespace" && x.ip)) {
      const port = hosts.find((h) => h.host === v.host)!.view.vmPorts.find((p) => p.mac === v.mac);
      expect(port, v.name).toMatchObject({ hasRules: true });
      expect(port!.addresses, v.name).toContain(v.ip);
    }
    const backend = hosts.find((h) => h.host === "backend")!.view;
    expect(backend.nft?.exists).toBe(true);
    expect(backend.leases.length).toBeGreaterThan(0);
    // Read-only: the VM host's flows (without counters) are what they were.
    expect(await flows("hosta", "br-secure")).toBe(before);
  });

  it("lab check: every row of the connectivity matrix as expected", async () => {
    const t = performance.now();
    rows = await runProbes(connectivityProbes(inventory, status));
    timings.check = performance.now() - t;
    timings.checkOneWay = Math.max(0, ...rows.filter((r) => oneWayChecks.test(r.check)).map((r) => r.ms ?? 0));
    const failed = rows.filter((r) => !r.ok);
    expect(failed, JSON.stringify(failed, null, 1)).toEqual([]);
    const has = (check: RegExp, from: string | RegExp, to: RegExp, got: string) =>
      expect(rows.some((r) => check.test(r.check) && (typeof from === "string" ? r.from === from : from.test(r.from)) && to.test(r.to) && r.got === got), `${check} ${from} -> ${to}: ${got}`).toBe(true);
    const vmsIn = (net: string) => status.vms.filter((v) => v.kind !== "domain" && v.network === net && v.ip).map((v) => v.name);
    const names = (list: string[]) => new RegExp(`^(${list.join("|")})$`);
    // layer 2 (host agent); isolation rows are one-way: nothing of the sender reaches the isolated VM
    has(/^same-network \(across hosts\)$/, "vma1", /^vmb1$/, "reach");
    has(/^isolated port \(same host\)$/, "vma3", /^vma1$/, "blocked");
    has(/^isolated port \(same host\)$/, "vma1", /^vma3$/, "blocked");
    has(/^gateway$/, "vma3", /^gw-secure$/, "reach");
    for (const members of inventory.networks.flatMap((n) => Object.values(n.cluster_groups))) {
      if (members.length > 1) has(/^cluster group/, names(members), names(members), "reach"); // isolated, yet members reach each other
    }
    // every ordered pair of networks: apart on layer 2 (same host and across), never routed, not the other's gateway
    const nets = inventory.networks.map((n) => n.name).filter((n) => vmsIn(n).length > 0);
    for (const x of nets) {
      for (const y of nets.filter((n) => n !== x)) {
        has(/^vlans apart/, names(vmsIn(x)), names(vmsIn(y)), "blocked");
        has(/^networks apart \(routed\)$/, names(vmsIn(x)), names(vmsIn(y)), "blocked");
        has(/^only its own gateway$/, names(vmsIn(x)), new RegExp(`^gw-${y}$`), "blocked");
      }
    }
    expect(rows.filter((r) => /^vlans apart \(across hosts\)$/.test(r.check)).length).toBeGreaterThan(0);
    // anti-spoofing, observed at the gateway: a static VM, a DHCP VM (no static ip), each beside its own-address control
    const dhcpVms = inventory.networks.flatMap((n) => n.vms.filter((v) => !v.ip && v.host).map((v) => v.name));
    for (const from of ["vma1", ...(dhcpVms.length > 0 ? [names(dhcpVms)] : [])]) {
      has(/^anti-spoofing \(own address\)$/, from, /./, "reach");
      has(/^anti-spoofing \(source IP\)$/, from, /./, "blocked");
      has(/^anti-spoofing \(source MAC\)$/, from, /./, "blocked");
    }
    for (const v of inventory.networks.flatMap((n) => n.vms.filter((x) => x.extra_addresses.length > 0 && x.host))) has(/^anti-spoofing \(extra IP\)$/, v.name, /./, "reach");
    // gateway role: a fresh DHCP exchange per VM
    for (const v of status.vms.filter((x) => x.kind !== "domain")) has(/^dhcp lease$/, v.name, /./, "lease");
    has(/^dns \(vm names\)$/, "vma1", /^vmb1\.secure\.lab\.test$/, "resolve");
    has(/^dns \(vm names\)$/, "vmb1", /^vma1\.secure\.lab\.test$/, "resolve");
    has(/^dns policy \(allowlist\)$/, "vma1", /^www\.inet\.test$/, "refused");
    has(/^dns policy \(allowlist\)$/, "vma1", /^mirror\.inet\.test$/, "resolve");
    has(/^dns policy \(open\)$/, "vma2", /^www\.inet\.test$/, "resolve");
    has(/^egress \(allowlist\)$/, "vma1", /^198\.51\.100\.10:80$/, "masqueraded");
    has(/^egress \(allowlist\)$/, "vma1", /^198\.51\.100\.20:80$/, "blocked"); // a destination not on its list: its SYN never in the internet
    has(/^egress \(allowlist\)$/, "vma3", /^198\.51\.100\.10:80$/, "blocked"); // a VM without that entry
    has(/^egress \(allowlist\)$/, "vmb1", /^mirror\.inet\.test:80$/, "masqueraded"); // by name, through nftset
    has(/^egress \(open\)$/, "vma2", /^198\.51\.100\.20:80$/, "masqueraded");
    has(/^egress icmp \(open\)$/, "vma2", /^198\.51\.100\.10$/, "reach"); // forwarded ICMP
    has(/^egress icmp \(allowlist\)$/, "vma1", /^198\.51\.100\.10$/, "blocked");
    has(/^port-forward$/, "internet", /vma2:22$/, "reach");
    await vmsAsTheyWere();
  }, 240_000);

  it("a probe that cannot run is an error, never a pass: tools missing in the namespaces, probes killed by their timeout", async () => {
    const real = new ExecaRunner({ timeoutMs: 15_000 });
    // `ip netns exec NS TOOL ...` with TOOL gone: ip exits 1, as a ping without reply would
    const gone = new Set(["ping", "dig", "busybox", "env"]);
    const missing: Runner = { run: (c, o) => real.run({ ...c, argv: c.argv.map((a, i) => (i === 4 && c.argv[2] === "exec" && gone.has(a) ? `${a}-missing` : a)) }, o) };
    const probes = connectivityProbes(inventory, status);
    const t = performance.now();
    const broken = await runProbes(probes, missing);
    timings.checkToolsMissing = performance.now() - t;
    expect(broken.filter((r) => r.got !== "error").map((r) => `${r.check} ${r.from} -> ${r.to}: ${r.got}`)).toEqual([]);
    expect(broken.find((r) => r.check === "gateway")?.detail).toMatch(/ping-missing could not run/);
    expect(broken.find((r) => /^vlans apart/.test(r.check))?.detail).toMatch(/could not send .*-missing could not run/);
    // the runner's timeout: two-way rows only (a one-way phase killed mid-way would leave VMs changed)
    const killed = await runProbes(
      probes.filter((p) => !p.exclusive && /^(gateway|dhcp lease|dns policy|egress \(|port-forward)/.test(p.check)),
      new ExecaRunner({ timeoutMs: 1 }),
    );
    expect(killed.length).toBeGreaterThan(10);
    expect(killed.filter((r) => r.got !== "error").map((r) => `${r.check} ${r.from} -> ${r.to}: ${r.got}`)).toEqual([]);
    await vmsAsTheyWere();
  }, 240_000);

  it("a dhcp row is a fresh exchange: with its network's dnsmasq dead it fails, and passes once the agent starts dnsmasq again", async () => {
    const net = inventory.networks.find((n) => n.name === "datain") ?? inventory.networks.find((n) => n.vms.some((v) => v.host))!;
    const probes = connectivityProbes(inventory, status).filter((p) => p.check === "dhcp lease" && p.to === `gw-${net.name}`);
    expect(probes.length).toBeGreaterThan(0);
    const pidOf = () => dnsmasqPids()[net.name];
    let dead: CheckRow[] = [];
    // The backend's agent restarts a dead dnsmasq within a second (its watcher): stop the agent
    // first, so the probe meets a network without DHCP.
    const stopped = await labStopAgent(lab, "backend");
    expect(stopped, "the backend's agent ran").toBeDefined();
    try {
      const pid = pidOf()!;
      expect(existsSync(`/proc/${pid}`), `dnsmasq of ${net.name} runs`).toBe(true);
      process.kill(pid, "SIGTERM");
      await eventually(`dnsmasq ${pid} gone`, 10_000, async () => !existsSync(`/proc/${pid}`));
      dead = await runProbes(probes);
      expect(dead.map((r) => [r.from, r.got, r.ok])).toEqual(dead.map((r) => [r.from, "no-lease", false]));
    } finally {
      labStartAgent(lab, "backend");
    }
    await eventually(`dnsmasq of ${net.name} running again`, 30_000, async () => existsSync(`/proc/${pidOf()}`));
    const back = await runProbes(probes);
    expect(back.map((r) => [r.from, r.got, r.ok])).toEqual(back.map((r) => [r.from, "lease", true]));
  }, 90_000);

  it("frames between hosts cross the trunk tagged with the network's VLAN", async () => {
    // hosta's two trunk links as the switch sees them (active-backup: either may carry the traffic)
    const ports = ["h1-e0", "h1-e1"];
    const caps = ports.map((p) =>
      execa("ip", ["netns", "exec", "nft-sw", "tcpdump", "-l", "-n", "-e", "-c", "4", "-i", p, "icmp and host", vm("vmb1").ip!], { reject: false, timeout: 8000 }),
    );
    await sleep(700);
    expect(await ping("nft-vma1", vm("vmb1").ip!)).toBe(true);
    await sleep(300);
    for (const c of caps) c.kill("SIGINT"); // tcpdump prints what it has and exits
    const out = (await Promise.all(caps)).map((c) => String(c.stdout)).join("\n");
    const lines = out.split("\n").filter((l) => l.includes("ICMP"));
    expect(lines.length, out).toBeGreaterThan(0);
    for (const l of lines) expect(l).toMatch(/vlan 1081, p 0, ethertype IPv4/);
  }, 30_000);

  it("a libvirt domain's port gets its flows on start and loses them on stop", async () => {
    const dom = vm("dom-hosta");
    const h = host("hosta");
    const virsh = (...args: string[]) => runner.run(read("virsh", "-q", "-c", h.libvirtUri!, ...args));
    const mac = `dl_src=${dom.mac}`;
    expect(await flows("hosta", "br-secure")).not.toContain(mac);
    await virsh("start", "--paused", dom.name);
    try {
      await eventually(`flows for ${dom.mac} on br-secure`, 15_000, async () => (await flows("hosta", "br-secure")).includes(mac));
      const running = (await labStatus(lab)).vms.find((v) => v.name === dom.name)!;
      expect(running.state).toBe("paused");
      expect((await sh(["ovs-vsctl", `--db=unix:${h.ovsDb}`, "port-to-br", running.hostPort])).stdout.trim()).toBe("br-secure");
    } finally {
      await virsh("destroy", dom.name);
    }
    await eventually(`flows for ${dom.mac} gone`, 15_000, async () => !(await flows("hosta", "br-secure")).includes(mac));
  }, 60_000);

  it("restarting the agent keeps the flows; restarting ovs-vswitchd gets them back", async () => {
    const mac = `dl_src=${vm("vma1").mac}`;
    const before = await flows("hosta", "br-secure");
    expect(before).toContain(mac);
    // agent: stop it (SIGTERM leaves the host as it is), let lab up start it again
    const pid = agentPid("hosta")!;
    const backendAgent = agentPid("backend")!;
    const dnsmasqs = dnsmasqPids();
    process.kill(pid, "SIGTERM");
    process.kill(backendAgent, "SIGTERM");
    await eventually("agents gone", 10_000, async () => !existsSync(`/proc/${pid}`) && !existsSync(`/proc/${backendAgent}`));
    expect(await flows("hosta", "br-secure")).toBe(before);
    // the backend's dnsmasqs outlive their agent: DHCP and DNS never go away
    for (const p of Object.values(dnsmasqs)) expect(existsSync(`/proc/${p}`)).toBe(true);
    // ovs-vswitchd: kill it; lab up restarts it on its database, the agent restores the flows from live state
    const vswitchd = readLabState(lab.runDir)!.pids["ovs-vswitchd@nft-hosta"]!;
    process.kill(vswitchd, "SIGKILL");
    await eventually("ovs-vswitchd gone", 10_000, async () => !existsSync(`/proc/${vswitchd}`));
    const t = performance.now();
    status = await labUp(lab);
    expect(agentPid("hosta")).not.toBe(pid);
    expect(agentPid("backend")).not.toBe(backendAgent);
    expect(dnsmasqPids(), "the new backend agent adopted the running dnsmasqs").toEqual(dnsmasqs);
    await eventually("vma1's flows back", 20_000, async () => (await flows("hosta", "br-secure")).includes(mac));
    timings.flowsRestored = performance.now() - t;
    await eventually("vma1 reaches vmb1 again", 20_000, () => ping("nft-vma1", vm("vmb1").ip!));
  }, 90_000);

  it("a second reconcile on every host runs no mutating command", async () => {
    for (const h of status.hosts) {
      const r = await sh(agentCommand(lab, h, ["apply", "--assignment", join(lab.runDir, "assignments", `${h.name}.json`), "--name", h.name, "--json"]));
      expect(r.exitCode, r.stdout.slice(0, 2000)).toBe(0);
      const out = JSON.parse(r.stdout) as { summary: { changed: number }; results: { id: string; changed: boolean; commands: string[] }[] };
      expect(out.summary.changed, h.name).toBe(0);
      for (const res of out.results) expect(res.commands, `${h.name} ${res.id}`).toEqual([]);
    }
  }, 60_000);

  it("another host's assignment is refused (exit 4, one line naming both), and the host is left as it was; its own still converges", async () => {
    // The gateway table, with what moves by itself taken out: counters and dynamic set elements' time left.
    const ruleset = async () => (await sh(["ip", "netns", "exec", "nft-backend", "nft", "list", "ruleset"])).stdout.replace(/counter packets \d+ bytes \d+/g, "counter").replace(/ expires [\dhms]+/g, "");
    const backend = status.hosts.find((h) => h.role === "backend")!;
    const vmhost = status.hosts.find((h) => h.role === "vmhost")!;
    const before = await ruleset();
    expect(before).toContain("table inet netfleet");
    for (const [h, other] of [[backend, vmhost], [vmhost, backend]] as const) {
      const r = await runner.run(read(...agentCommand(lab, h, ["apply", "--assignment", join(lab.runDir, "assignments", `${other.name}.json`), "--name", h.name, "--json"])), { allowFailure: true });
      expect(r.exitCode, r.stdout.slice(0, 2000)).toBe(4);
      expect(r.stdout).toBe("");
      expect(r.stderr.trim().split("\n")).toEqual([expect.stringContaining(`is the assignment of host ${other.name}, and this host is ${h.name} (--name); refused, nothing changed`)]);
      // At the target: the backend's gateway table is as it was, and each host's own assignment finds nothing to change.
      expect(await ruleset()).toBe(before);
      const own = await sh(agentCommand(lab, h, ["apply", "--assignment", join(lab.runDir, "assignments", `${h.name}.json`), "--name", h.name, "--check", "--json"]));
      expect(own.exitCode, own.stdout.slice(0, 2000)).toBe(0);
      expect((JSON.parse(own.stdout) as { summary: { pending: number } }).summary.pending, h.name).toBe(0);
    }
  }, 60_000);

  it("changing an allow list updates the sets in place: an established connection survives", async () => {
    const nftSet = async (set: string) => (await sh(["ip", "netns", "exec", "nft-backend", "nft", "list", "set", "inet", "netfleet", set])).stdout;
    const held: ResultPromise = execa("ip", ["netns", "exec", "nft-vma1", process.execPath, LABNET, "hold", "198.51.100.10", "80"], {
      reject: false,
      stdin: "pipe",
      timeout: 60_000,
    });
    const lines: string[] = [];
    held.stdout!.on("data", (d: Buffer) => lines.push(...d.toString().split("\n").filter(Boolean)));
    try {
      await eventually("the held connection's greeting", 10_000, async () => lines.length >= 1);
      expect(lines[0]).toBe("inet 203.0.113.1");
      // vma1 may now also reach 198.51.100.20: the operator edits the inventory and rolls it out
      const widened = wideInventory();
      const tableBefore = (await sh(["ip", "netns", "exec", "nft-backend", "nft", "-a", "list", "chain", "inet", "netfleet", "forward"])).stdout;
      const dnsmasqs = dnsmasqPids();
      const r = await rollout(widened);
      expect(r.exitCode, r.stdout).toBe(0);
      expect(r.stdout).toMatch(/backend: OK/);
      await eventually("10.81.0.11 . 198.51.100.20 in allow_all_tcp", 20_000, async () => (await nftSet("allow_all_tcp")).includes("10.81.0.11 . 198.51.100.20"));
      expect(dnsmasqPids(), "an allow list by address leaves dnsmasq's config, and dnsmasq, alone").toEqual(dnsmasqs);
      // the same chain with the same rule handles: the table was edited, not replaced
      expect((await sh(["ip", "netns", "exec", "nft-backend", "nft", "-a", "list", "chain", "inet", "netfleet", "forward"])).stdout).toBe(tableBefore);
      held.stdin!.write("still there?\n");
      await eventually("the echo over the held connection", 5000, async () => lines.includes("inet still there?"));
      const c = await sh(["ip", "netns", "exec", "nft-vma1", process.execPath, LABNET, "connect", "198.51.100.20", "80", "2000"]);
      expect(c.stdout.trim()).toBe("inet 203.0.113.1");
    } finally {
      const back = await rollout(lab.inventoryDir);
      expect(back.exitCode, back.stdout).toBe(0);
    }
    await eventually("the widened entry gone again", 20_000, async () => !(await nftSet("allow_all_tcp")).includes("10.81.0.11 . 198.51.100.20"));
    held.stdin!.write("and now?\n");
    await eventually("the echo after the narrowing", 5000, async () => lines.includes("inet and now?"));
    held.stdin!.end();
    expect((await held).exitCode).toBe(0);
  }, 90_000);

  it("bond member failover keeps traffic flowing", async () => {
    const h = host("hosta");
    const active = async () => /active (?:member|slave) mac: [0-9a-f:]+\((eth\d)\)/.exec((await sh(["ovs-appctl", "-t", `${h.ovsRundir}/ovs-vswitchd.ctl`, "bond/show", "bond0"])).stdout)?.[1];
    const first = await active();
    expect(first, "an active bond member").toMatch(/^eth[01]$/);
    const peer = `h1-e${first!.slice(3)}`;
    await runner.run(read("ip", "-n", "nft-sw", "link", "set", "dev", peer, "down"));
    try {
      await eventually("the other member active", 15_000, async () => (await active()) !== first && (await active()) !== undefined);
      await eventually("vma1 reaches vmb1 over the other member", 15_000, () => ping("nft-vma1", vm("vmb1").ip!));
    } finally {
      await runner.run(read("ip", "-n", "nft-sw", "link", "set", "dev", peer, "up"));
    }
    expect(await ping("nft-vma1", vm("vmb1").ip!)).toBe(true);
  }, 60_000);

  it("a second up changes nothing and restarts nothing", async () => {
    const before = readLabState(lab.runDir)!;
    const t = performance.now();
    const again = await labUp(lab);
    timings.secondUp = performance.now() - t;
    const after = readLabState(lab.runDir)!;
    expect(again.up).toBe(true);
    expect(after.pids).toEqual(before.pids);
    for (const [name, r] of Object.entries(after.agents)) expect(r, `agent on ${name}`).toMatchObject({ summary: { changed: 0, failed: 0, pending: 0 } });
  }, 120_000);

  // netfleet-lab status and rollout DIR on this same lab (issue 16 point 6): it ends rolled out with inventories/lab again
  playgroundRows(lab, () => status);

  it("down leaves no namespace, no process and no run dir", async () => {
    const t = performance.now();
    await labDown(lab);
    timings.down = performance.now() - t;
    expect(namespacesWithPrefix(lab.prefix)).toEqual([]);
    expect(labProcesses({ netnsInodes: new Set(), runDir: lab.runDir })).toEqual([]);
    expect(existsSync(lab.runDir)).toBe(false);
    expect((await labStatus(lab)).up).toBe(false);
    await labDown(lab); // a second down is harmless
  }, 60_000);
});

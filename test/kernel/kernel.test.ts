import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseFlows, type Flow } from "../../packages/agent/src/resources/openflow.ts";
import { describeFlows } from "../../packages/agent/src/resources/vm-port-policy.ts";
import { sealAssignment, type ResourceSpec } from "@netfleet/shared";
import { guardTests } from "./management-checks.ts";
import { qosTests, writeQosAssignment } from "./qos-checks.ts";
import { vxlanTests, writeVxlanAssignments } from "./vxlan-checks.ts";
import { bootGuest, guestFile, missingPrerequisite, REPO, type GuestRun } from "./harness.ts";

// Tier 2: the agent against Debian's kernel (bonding, 8021q, OVS kernel
// datapath) in one qemu VM per suite. The guest script (guest/suite.sh) runs
// the product CLI on the compiled assignments of test/kernel/site and records
// everything; these tests only read what it wrote.

const SITE = "ktest";
const OWNER = `netfleet-owner=${SITE}`;
/** The VMs (namespaces in the guest, see guest/suite.sh), kv2's spoofing second MAC, a MAC nobody has, the gateways. */
const KV1 = "52:54:00:81:00:11";
const KV2 = "52:54:00:81:00:12";
const KS1 = "52:54:00:82:00:21";
const KV2M = "52:54:00:81:00:99";
const UNKNOWN = "52:54:00:81:00:77";
const GW1081 = "02:4e:46:00:04:39";
const GW1082 = "02:4e:46:00:04:3a";
const COOKIE = { "br-secure": "0x4e46000000000439", "br-service": "0x4e4600000000043a" } as const;
/** The guest's whole run is bounded (900 s: an idle 2-core machine took 488 s under TCG with the VXLAN and QoS rows, a loaded one far more); NFK_TIMEOUT changes it. */
const GUEST_TIMEOUT_S = Number(process.env.NFK_TIMEOUT ?? 900);
const skipReason = missingPrerequisite();
if (skipReason) console.warn(`kernel tier skipped: ${skipReason}`);

interface AgentOutput {
  host: string;
  check: boolean;
  summary: { ok: number; changed: number; failed: number; pending: number };
  results: { id: string; result: boolean | null; changed: boolean; commands: string[]; comment: string; error?: string }[];
}

interface LinkRow {
  ifname: string;
  mtu: number;
  flags: string[];
  address?: string;
  ifalias?: string;
  master?: string;
  link?: string;
  operstate?: string;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
}

interface AddrRow {
  ifname: string;
  addr_info: { family: string; local: string; prefixlen: number }[];
}

let run: GuestRun;

function text(rel: string): string {
  const content = guestFile(run, rel);
  if (content === undefined) throw new Error(`the guest did not write ${rel}; guest log:\n${run.log.slice(-3000)}`);
  return content;
}

function rc(name: string): number {
  return Number(text(`${name}.rc`).trim());
}

function agentRun(name: string): AgentOutput & { exitCode: number; stderr: string } {
  const raw = text(`${name}.json`);
  const stderr = guestFile(run, `${name}.err`) ?? "";
  let parsed: AgentOutput;
  try {
    parsed = JSON.parse(raw) as AgentOutput;
  } catch {
    throw new Error(`${name}: agent printed no JSON (exit ${rc(name)}); stderr:\n${stderr}`);
  }
  return { ...parsed, exitCode: rc(name), stderr };
}

function links(role: string): Map<string, LinkRow> {
  return new Map((JSON.parse(text(`${role}/links.out`)) as LinkRow[]).map((l) => [l.ifname, l]));
}

function link(role: string, name: string): LinkRow {
  const l = links(role).get(name);
  if (!l) throw new Error(`${role}: no link ${name} (have ${[...links(role).keys()].join(", ")})`);
  return l;
}

/** Failed resources with their messages, for readable assertion output. */
function failures(out: AgentOutput): string[] {
  return out.results.filter((r) => r.result !== true).map((r) => `${r.id}: ${r.comment}${r.error ? ` — ${r.error}` : ""}`);
}

/** Resources of a run that would run (or ran) a command: empty when the host was left as it was. */
function busy(out: AgentOutput): string[] {
  return out.results.filter((r) => r.changed || r.commands.length > 0).map((r) => `${r.id}: ${r.commands.join(" ; ")}`);
}

/** One line of `tcpdump -tt -e -nn`: epoch time, MACs, 802.1Q tag, IPv4 addresses and ports when there are. */
interface Frame {
  t: number;
  src: string;
  dst: string;
  vlan?: number;
  ether: string;
  ipSrc?: string;
  ipDst?: string;
  sport?: number;
  dport?: number;
  text: string;
}

function frames(rel: string): Frame[] {
  const out: Frame[] = [];
  for (const line of text(`${rel}.txt`).split("\n")) {
    const head = /^(\d+\.\d+) ([0-9a-f:]{17}) > ([0-9a-f:]{17}), ethertype (\S+)/.exec(line);
    if (!head) continue;
    const f: Frame = { t: Number(head[1]), src: head[2]!, dst: head[3]!, ether: head[4]!, text: line };
    const vlan = /: vlan (\d+), p \d+, ethertype (\S+)/.exec(line);
    if (vlan) {
      f.vlan = Number(vlan[1]);
      f.ether = vlan[2]!;
    }
    const ip = /\b(\d{1,3}(?:\.\d{1,3}){3})(?:\.(\d+))? > (\d{1,3}(?:\.\d{1,3}){3})(?:\.(\d+))?: /.exec(line);
    if (f.ether === "IPv4" && ip) {
      f.ipSrc = ip[1]!;
      f.ipDst = ip[3]!;
      if (ip[2]) f.sport = Number(ip[2]);
      if (ip[4]) f.dport = Number(ip[4]);
    }
    out.push(f);
  }
  return out;
}

const echoRequest = (f: Frame) => f.ether === "IPv4" && / ICMP echo request\b/.test(f.text);
const echoReply = (f: Frame) => f.ether === "IPv4" && / ICMP echo reply\b/.test(f.text);

/** Echo requests in a capture from this MAC and source address. */
function echoes(rel: string, mac: string, ipSrc: string): Frame[] {
  return frames(rel).filter((f) => f.src === mac && f.ipSrc === ipSrc && echoRequest(f));
}

/** "N packets transmitted" of a ping that ran (a ping that never ran has no such line, and the row must not pass). */
function transmitted(name: string): number {
  const m = /(\d+) packets transmitted/.exec(text(`${name}.out`));
  if (!m) throw new Error(`${name}: ping did not run (exit ${rc(name)}): ${text(`${name}.out`)}${text(`${name}.err`)}`);
  return Number(m[1]);
}

function stampAt(rel: string): number {
  return Number(text(rel).trim());
}

/** A bridge's table 0 as ovs-ofctl printed it after the agent's apply. */
function flows(bridge: string): Flow[] {
  return parseFlows(text(`vmhost/flows-${bridge}.out`));
}

/** `ovs-vsctl --format=json list Bridge -- list Port -- list Interface` after the last apply: one table per line. */
function ovsTable(which: "Bridge" | "Port" | "Interface"): { headings: string[]; data: unknown[][] } {
  const tables = text("vmhost/ovs-ports.out").trim().split("\n").map((l) => JSON.parse(l) as { headings: string[]; data: unknown[][] });
  return tables[["Bridge", "Port", "Interface"].indexOf(which)]!;
}

/** A column of an ovs-vsctl JSON row by heading; maps (`["map", [[k, v]...]]`) as objects. */
function ovsRow(which: "Bridge" | "Port" | "Interface", name: string): Record<string, unknown> {
  const table = ovsTable(which);
  const row = table.data.find((r) => r[0] === name);
  if (!row) throw new Error(`no ${which} ${name}`);
  const unwrap = (v: unknown) => (Array.isArray(v) && v[0] === "map" ? Object.fromEntries(v[1] as [string, string][]) : v);
  return Object.fromEntries(table.headings.map((h, i) => [h, unwrap(row[i])]));
}

function ofport(name: string): number {
  return Number(ovsRow("Interface", name).ofport);
}

/** A flow as `priority match actions`, match fields in ovs-ofctl's order. */
function described(f: Flow): string {
  return describeFlows([f])[0]!;
}

/**
 * The management guard's hosts (guest/management.sh): a kernel bond over eth0 (which holds the
 * management address and the default route) and eth1, and a VLAN interface on it, as the
 * compiler emits them for a kernel uplink; kmb's and kmc's with carries_management
 * (management.address); kmc's members listed eth1 first (the active member: its far end dangles).
 */
function writeManagementAssignments(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const hosts: [string, string, Partial<Extract<ResourceSpec, { kind: "kernel-bond" }>>][] = [
    ["kma", "10.98.0.11/24", {}],
    ["kmb", "10.98.0.12/24", { management: { address: "10.98.0.12/24" } }],
    ["kmc", "10.98.0.13/24", { members: ["eth1", "eth0"], management: { address: "10.98.0.13/24" } }],
  ];
  for (const [host, , bond] of hosts) {
    const resources: ResourceSpec[] = [
      { kind: "kernel-bond", name: "bond0", mode: "active-backup", members: ["eth0", "eth1"], miimon: 100, mtu: 1500, ...bond },
      { kind: "vlan-interface", name: "bond0.1090", parent: "bond0", vlan: 1090, mtu: 1500 },
    ];
    const doc = sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: "kmgmt", host, role: "vmhost", resources });
    writeFileSync(join(dir, `${host}.json`), JSON.stringify(doc, null, 2) + "\n");
  }
}

describe.skipIf(skipReason !== undefined)(`kernel tier${skipReason ? ` (skipped: ${skipReason})` : ""}`, () => {
  beforeAll(async () => {
    run = await bootGuest({
      script: "suite.sh",
      timeoutS: GUEST_TIMEOUT_S,
      prepare: (dir) => {
        const assignments = join(dir, "in");
        mkdirSync(assignments, { recursive: true });
        execFileSync(process.execPath, [join(REPO, "packages/controller/src/cli.ts"), "compile", join(REPO, "test/kernel/site"), "--out", assignments], {
          cwd: REPO,
          stdio: ["ignore", "pipe", "pipe"],
          timeout: 60_000,
        });
        writeManagementAssignments(join(assignments, "mgmt"));
        writeQosAssignment(join(assignments, "qos"));
        writeVxlanAssignments(REPO, join(assignments, "vxlan"));
      },
    });
  }, (GUEST_TIMEOUT_S + 60) * 1000);

  it("boots Debian's kernel and the guest set-up succeeds", () => {
    const detail = `guest rc ${run.rc}, qemu exit ${run.qemuExit}${run.timedOut ? " (timed out)" : ""}, share ${run.dir}\n--- guest log tail\n${run.log.slice(-3000)}\n--- console tail\n${run.console.slice(-2000)}`;
    expect(run.timedOut, detail).toBe(false);
    expect(run.rc, detail).toBe(0);
  });

  it("the guest stopped every daemon and sender it started (dnsmasq, libvirtd, ovsdb-server, ovs-vswitchd, tcpdump, ping)", () => {
    const ps = text("logs/ps.out").trim().split("\n");
    expect(ps[0]).toMatch(/^\s*PID COMMAND\s+COMMAND$/);
    expect(ps.length).toBeGreaterThan(3);
    const left = ps.slice(1).filter((l) => ["dnsmasq", "libvirtd", "ovsdb-server", "ovs-vswitchd", "tcpdump", "ping", "python3"].includes(l.trim().split(/\s+/)[1] ?? ""));
    expect(left).toEqual([]);
  });

  describe("VM host kvm1", () => {
    it("first apply converges every resource", () => {
      const first = agentRun("vmhost/apply1");
      expect(failures(first), first.stderr).toEqual([]);
      expect(first.exitCode).toBe(0);
      expect(first.results.map((r) => r.id)).toEqual([
        "kernel-bond[bond0]",
        "vlan-interface[bond0.1081]",
        "vlan-interface[bond0.1082]",
        "ovs-bridge[br-secure]",
        "ovs-bridge[br-service]",
        "vm-port-policy[br-secure]",
        "vm-port-policy[br-service]",
        "libvirt-network[secure]",
        "libvirt-network[service]",
        "prune[host]",
      ]);
      expect(first.results.filter((r) => r.changed).map((r) => r.id)).toEqual(
        expect.arrayContaining([
          "kernel-bond[bond0]",
          "vlan-interface[bond0.1081]",
          "vlan-interface[bond0.1082]",
          "ovs-bridge[br-secure]",
          "ovs-bridge[br-service]",
          "libvirt-network[secure]",
          "libvirt-network[service]",
        ]),
      );
    });

    it("with VM ports plugged, the second apply changes only the VM port policies, as lifecycle (not drift)", () => {
      const second = agentRun("vmhost/apply2");
      expect(failures(second), second.stderr).toEqual([]);
      expect(second.exitCode).toBe(0);
      const changed = second.results.filter((r) => r.changed);
      expect(changed.map((r) => r.id)).toEqual(["vm-port-policy[br-secure]", "vm-port-policy[br-service]"]);
      for (const r of changed) expect(r, r.id).toMatchObject({ lifecycle: true });
    });

    it("third apply changes nothing and runs no command", () => {
      const third = agentRun("vmhost/apply3");
      expect(failures(third), third.stderr).toEqual([]);
      expect(third.exitCode).toBe(0);
      expect(third.summary).toEqual({ ok: 10, changed: 0, failed: 0, pending: 0 });
      expect(busy(third)).toEqual([]);
    });

    it.each(["secure", "service"])("libvirt network %s is defined from a file in the agent's run dir, not from /dev/stdin", (net) => {
      const r = agentRun("vmhost/apply1").results.find((x) => x.id === `libvirt-network[${net}]`)!;
      const path = `/run/netfleet/libvirt/${net}.xml`;
      expect(r.commands.map((c) => c.split("\n")[0])).toEqual([
        expect.stringMatching(new RegExp(`^# write ${path} \\(\\d+ bytes\\)$`)),
        `virsh -q -c qemu:///system net-define ${path}`,
        `virsh -q -c qemu:///system net-autostart ${net}`,
        `virsh -q -c qemu:///system net-start ${net}`,
      ]);
      expect(r.commands.join("\n")).not.toContain("/dev/stdin");
      // the file holds exactly the XML the plan showed, and libvirt kept our owner mark from it
      expect(text(`vmhost/defined-${net}.out`)).toBe(r.commands[0]!.split("\n").slice(1).join("\n") + "\n");
      expect(text(`vmhost/virsh-net-dumpxml-${net}.out`)).toMatch(/<nf:owner xmlns:nf="[^"]+">ktest<\/nf:owner>/);
    });

    it("bond0 is an active-backup bond of eth0 and eth1, MTU 9000, marked as ours", () => {
      const bond = link("vmhost", "bond0");
      expect(bond.linkinfo?.info_kind).toBe("bond");
      expect(bond.linkinfo?.info_data?.mode).toBe("active-backup");
      expect(bond.linkinfo?.info_data?.miimon).toBe(100);
      expect(bond.mtu).toBe(9000);
      expect(bond.ifalias).toBe(OWNER);
      expect(bond.flags).toContain("UP");
      const members = [...links("vmhost").values()].filter((l) => l.master === "bond0").map((l) => l.ifname).sort();
      expect(members).toEqual(["eth0", "eth1"]);
      expect(text("vmhost/bonding.out")).toMatch(/Bonding Mode: fault-tolerance \(active-backup\)[\s\S]*Currently Active Slave: eth0/);
    });

    it.each([1081, 1082])("bond0.%i is an 802.1Q subinterface of bond0, MTU 9000, marked as ours", (vid) => {
      const vlan = link("vmhost", `bond0.${vid}`);
      expect(vlan.linkinfo?.info_kind).toBe("vlan");
      expect(vlan.linkinfo?.info_data).toMatchObject({ protocol: "802.1Q", id: vid });
      expect(vlan.link).toBe("bond0");
      expect(vlan.mtu).toBe(9000);
      expect(vlan.ifalias).toBe(OWNER);
      expect(vlan.flags).toContain("UP");
    });

    it("br-secure holds bond0.1081 and br-service holds bond0.1082, marked as ours; the VM ports libvirt-style plugged stay, not ours", () => {
      expect(text("vmhost/ovs-br-secure-ports.out").split("\n").filter(Boolean)).toEqual(["bond0.1081", "vnet-kv1", "vnet-kv2"]);
      expect(text("vmhost/ovs-br-service-ports.out").split("\n").filter(Boolean)).toEqual(["bond0.1082", "vnet-ks1"]);
      for (const name of ["br-secure", "br-service"]) expect(ovsRow("Bridge", name).external_ids, name).toMatchObject({ "netfleet-owner": SITE });
      for (const name of ["bond0.1081", "bond0.1082"]) expect(ovsRow("Port", name).external_ids, name).toMatchObject({ "netfleet-owner": SITE });
      for (const [vm, mac] of [["kv1", KV1], ["kv2", KV2], ["ks1", KS1]] as const) {
        expect(ovsRow("Port", `vnet-${vm}`).external_ids, vm).not.toHaveProperty("netfleet-owner");
        const ids = ovsRow("Interface", `vnet-${vm}`).external_ids as Record<string, string>;
        expect(ids, vm).toMatchObject({ "attached-mac": mac, "iface-status": "active" });
        expect(ids["iface-id"], vm).toMatch(/^[0-9a-f-]{36}$/);
        expect(ids["vm-id"], vm).toMatch(/^[0-9a-f-]{36}$/);
      }
    });

    it("the bridges run on the kernel datapath (system@ovs-system)", () => {
      const dp = text("vmhost/ovs-dpctl-show.out");
      expect(dp).toMatch(/^system@ovs-system:/);
      expect(dp).toMatch(/port \d+: bond0\.1081\b/);
      expect(dp).toMatch(/port \d+: bond0\.1082\b/);
      expect(dp).toMatch(/port \d+: br-secure \(internal\)/);
      for (const vm of ["kv1", "kv2", "ks1"]) expect(dp).toMatch(new RegExp(`port \\d+: vnet-${vm}\\n`));
      expect(text("vmhost/ovs-vsctl-show.out")).not.toMatch(/datapath_type: netdev/);
    });

    it("libvirt networks secure and service are defined on the OVS bridges, active and autostarted", () => {
      expect(text("vmhost/virsh-net-list.out")).toMatch(/^\s*secure\s+active\s+yes\s+yes\s*$/m);
      expect(text("vmhost/virsh-net-list.out")).toMatch(/^\s*service\s+active\s+yes\s+yes\s*$/m);
      const xml = text("vmhost/virsh-net-dumpxml-secure.out");
      expect(xml).toContain("<bridge name='br-secure'/>");
      expect(xml).toContain("<virtualport type='openvswitch'/>");
      expect(xml).toMatch(/<nf:owner xmlns:nf="[^"]+">ktest<\/nf:owner>/);
    });
  });

  describe("VM ports on the kernel datapath (namespaces plugged as libvirt plugs taps; targets: kbe's gateway interfaces, the VMs, the wire)", () => {
    const VMS = [
      { vm: "kv1", mac: KV1, capture: "window/gw-1081" },
      { vm: "kv2", mac: KV2, capture: "window/gw-1081" },
      { vm: "ks1", mac: KS1, capture: "window/gw-1082" },
    ];

    it("fail closed: a plugged VM port carries nothing before the agent's apply, and passes after it", () => {
      const applyStart = stampAt("window/apply-start");
      const applyEnd = stampAt("window/apply-end");
      expect(applyStart - stampAt("window/senders-start")).toBeGreaterThanOrEqual(3);
      // before: the baseline of apply1 only (floor drop, the uplink to forwarding, forwarding to the uplink,
      // remote isolated VMs' broadcasts), nothing that names the plugged ports
      const baseline = parseFlows(text("window/flows-br-secure.out"));
      const upPort = ofport("bond0.1081");
      const up = `in_port=${upPort}`;
      expect(baseline.map(described)).toContain("0  drop");
      const allowed = ["drop", "goto_table:1", `output:${upPort}`];
      expect(baseline.filter((f) => !(f.match.length === 0 || f.match.includes(up) || f.table === 1) || !allowed.includes(f.actions)).map(described)).toEqual([]);
      for (const { vm, mac, capture } of VMS) {
        // every echo request the VM sent is logged (-D -O): with no answer yet, or answered
        const log = text(`window/send-${vm}.out`);
        const sentBefore = [...log.matchAll(/^\[(\d+\.\d+)\] no answer yet for icmp_seq=\d+/gm)].filter((m) => Number(m[1]) < applyStart).length;
        const at = frames(capture).filter((f) => f.src === mac);
        const before = at.filter((f) => f.t < applyStart);
        const after = at.filter((f) => f.t > applyEnd);
        expect(sentBefore, `${vm} sent before the apply`).toBeGreaterThanOrEqual(20);
        expect(before.map((f) => f.text), `${vm}: frames at the gateway before the apply`).toEqual([]);
        expect(after.length, `${vm}: frames at the gateway after the apply`).toBeGreaterThan(0);
        expect(at[0]!.t, vm).toBeGreaterThan(applyStart);
        expect(log, vm).toMatch(/ bytes from 192\.168\.12[28]\.1: icmp_seq=\d+/);
      }
    });

    it("the other way through the window: unknown unicast from the uplink reaches no VM port, before the agent's apply (not vetted) or after (not its MAC)", () => {
      // The control of the same direction: the gateway's echo replies reached the VMs once their rules were in (row above).
      const at = (vm: string) => frames(`window/at-${vm}`).filter((f) => f.dst === UNKNOWN);
      expect(at("kv1").map((f) => f.text), "kv1").toEqual([]);
      expect(at("kv2").map((f) => f.text), "kv2").toEqual([]);
    });

    it.each(["br-secure", "br-service"])("%s runs fail_mode=secure and holds only the agent's rules, with its cookie", (br) => {
      expect(ovsRow("Bridge", br).fail_mode).toBe("secure");
      const table = flows(br as keyof typeof COOKIE);
      expect(table.length).toBeGreaterThan(5);
      expect(table.filter((f) => f.cookie !== COOKIE[br as keyof typeof COOKIE]).map(described)).toEqual([]);
      expect(table.map(described)).toContain(`0  drop`);
    });

    it("the rules read back from the datapath pin each port to its MAC and addresses (static, extra, leased), isolate kv1, guard DHCP and IPv6", () => {
      const up1 = ofport("bond0.1081");
      const up2 = ofport("bond0.1082");
      const [p1, p2, p3] = [ofport("vnet-kv1"), ofport("vnet-kv2"), ofport("vnet-ks1")];
      const secure = flows("br-secure");
      const service = flows("br-service");
      /** The table holds this rule: same priority, same match fields (any order), same actions. */
      const has = (table: Flow[], priority: number, actions: string, ...match: string[]) => {
        const found = table.some((f) => f.priority === priority && f.actions === actions && f.match.length === match.length && match.every((m) => f.match.includes(m)));
        expect(found, `${priority} ${match.join(",")} ${actions} in\n${table.map(described).join("\n")}`).toBe(true);
      };
      // kv2 (not isolated): its static address, its extra address, ARP for both; a spoofed one falls to the port's drop
      has(secure, 210, "goto_table:1", "ip", `in_port=${p2}`, `dl_src=${KV2}`, "nw_src=192.168.128.12");
      has(secure, 210, "goto_table:1", "ip", `in_port=${p2}`, `dl_src=${KV2}`, "nw_src=192.168.128.50");
      has(secure, 210, "goto_table:1", "arp", `in_port=${p2}`, `dl_src=${KV2}`, `arp_sha=${KV2}`, "arp_spa=192.168.128.50");
      has(secure, 200, "drop", `in_port=${p2}`);
      // kv1 (isolated): to the gateway MAC only, out of the uplink; nothing to kv1 but from the gateway
      has(secure, 220, `output:${up1}`, "ip", `in_port=${p1}`, `dl_src=${KV1}`, "nw_src=192.168.128.11", `dl_dst=${GW1081}`);
      has(secure, 220, `output:${p1}`, `in_port=${up1}`, `dl_src=${GW1081}`, `dl_dst=${KV1}`);
      has(secure, 215, "drop", `dl_dst=${KV1}`);
      has(secure, 230, `output:${p1},goto_table:1`, `in_port=${up1}`, `dl_src=${GW1081}`, "dl_dst=ff:ff:ff:ff:ff:ff");
      expect(secure.filter((f) => f.match.includes(`in_port=${p1}`) && f.actions.includes("goto_table")).map(described)).toEqual([]);
      // forwarding (table 1): kv2's MAC to kv2; broadcasts to the uplink and kv2, never to the isolated kv1
      expect(secure.some((f) => f.table === 1 && f.match.includes(`dl_dst=${KV2}`) && f.actions === `output:${p2}`)).toBe(true);
      expect(secure.filter((f) => f.table === 1 && f.actions.split(",").includes(`output:${p1}`)).map(described)).toEqual([]);
      // guards on every VM port
      for (const p of [p1, p2]) {
        has(secure, 300, "drop", "udp", `in_port=${p}`, "tp_src=67");
        has(secure, 300, "drop", "ipv6", `in_port=${p}`);
      }
      // ks1: a MAC the inventory does not know, pinned to the lease kvm1 holds for it, and nothing else
      has(service, 210, "goto_table:1", "ip", `in_port=${p3}`, `dl_src=${KS1}`, "nw_src=192.168.122.150");
      const pinned = service.flatMap((f) => f.match.filter((m) => /^(nw_src|arp_spa)=/.test(m)));
      expect(pinned.length).toBeGreaterThan(0);
      expect([...new Set(pinned.map((m) => m.split("=")[1]))]).toEqual(["192.168.122.150"]);
      has(service, 100, "goto_table:1", `in_port=${up2}`);
    });

    it("no NORMAL action on a VM bridge: forwarding is the agent's table 1 (no flooding, no MAC learning)", () => {
      for (const br of ["br-secure", "br-service"] as const) {
        const table = flows(br);
        expect(table.filter((f) => f.actions.includes("NORMAL")).map(described), br).toEqual([]);
        expect(table.some((f) => f.table === 1), br).toBe(true);
      }
    });

    it("own address passes, a spoofed source address is never seen at the gateway (static isolated, static, and a DHCP VM of unknown MAC)", () => {
      const rows = [
        { vm: "kv1", mac: KV1, own: "192.168.128.11", spoofed: "192.168.128.98", gw: "traffic/gw-1081" },
        { vm: "kv2", mac: KV2, own: "192.168.128.12", spoofed: "192.168.128.13", gw: "traffic/gw-1081" }, // kv3's address
        { vm: "ks1", mac: KS1, own: "192.168.122.150", spoofed: "192.168.122.151", gw: "traffic/gw-1082" }, // its lease, and not
      ];
      for (const r of rows) {
        expect(rc(`traffic/${r.vm}-own`), `${r.vm}: ${text(`traffic/${r.vm}-own.out`)}`).toBe(0);
        expect(echoes(r.gw, r.mac, r.own).length, `${r.vm} own`).toBeGreaterThanOrEqual(3);
        expect(transmitted(`traffic/${r.vm}-spoof-ip`), r.vm).toBe(3);
        expect(frames(r.gw).filter((f) => f.ipSrc === r.spoofed).map((f) => f.text), `${r.vm} spoofing ${r.spoofed}`).toEqual([]);
      }
    });

    it("an extra address (virtual IP) passes with its ARP", () => {
      expect(rc("traffic/kv2-extra"), text("traffic/kv2-extra.out")).toBe(0);
      expect(echoes("traffic/gw-1081", KV2, "192.168.128.50").length).toBeGreaterThanOrEqual(3);
    });

    it("kv2's address from another MAC on kv2's port is never seen, neither at the gateway nor on the wire", () => {
      expect(transmitted("traffic/kv2m-spoof-mac")).toBe(3);
      expect(frames("traffic/gw-1081").filter((f) => f.src === KV2M).map((f) => f.text)).toEqual([]);
      expect([...frames("traffic/wire-peer0"), ...frames("traffic/wire-peer1")].filter((f) => f.src === KV2M).map((f) => f.text)).toEqual([]);
      expect(echoes("traffic/gw-1081", KV2, "192.168.128.12").length).toBeGreaterThanOrEqual(3); // the control: kv2's own MAC
    });

    it("isolation: kv1 (isolated) and kv2 never see each other's frames, while both reach the gateway; kv1 learnt the gateway by ARP", () => {
      expect(transmitted("traffic/kv1-to-kv2")).toBe(3);
      expect(transmitted("traffic/kv2-to-kv1")).toBe(3);
      expect(frames("traffic/at-kv2").filter((f) => f.src === KV1 || f.ipSrc === "192.168.128.11").map((f) => f.text)).toEqual([]);
      expect(frames("traffic/at-kv1").filter((f) => f.src === KV2 || f.ipSrc === "192.168.128.12").map((f) => f.text)).toEqual([]);
      // controls: each capture in a VM works and holds its gateway's echo replies
      for (const vm of ["kv1", "kv2"]) {
        expect(rc(`traffic/${vm}-own`)).toBe(0);
        expect(frames(`traffic/at-${vm}`).filter((f) => f.src === GW1081 && echoReply(f)).length, vm).toBeGreaterThanOrEqual(3);
      }
      const neigh = JSON.parse(text("traffic/kv1-neigh.out")) as { dst: string; lladdr?: string; state?: string[] }[];
      expect(neigh.find((n) => n.dst === "192.168.128.1")).toMatchObject({ lladdr: GW1081 });
    });

    it("unicast from the uplink reaches only the VM port that holds its MAC: kv2 gets the switch's frames for its MAC; nobody gets those for a MAC no port here holds", () => {
      expect(transmitted("traffic/flood-unknown")).toBe(3);
      expect(transmitted("traffic/to-kv2")).toBe(3);
      expect(frames("traffic/at-kv2").filter((f) => f.dst === KV2 && f.text.includes("10.81.0.254 > 192.168.128.12: ICMP echo request")).length).toBeGreaterThanOrEqual(1);
      expect(frames("traffic/at-kv1").filter((f) => f.text.includes("10.81.0.254 >")).map((f) => f.text)).toEqual([]);
      for (const vm of ["kv1", "kv2"]) expect(frames(`traffic/at-${vm}`).filter((f) => f.dst === UNKNOWN).map((f) => f.text), vm).toEqual([]);
    });

    it("guards: IPv6 and a DHCP server's replies (udp sport 67) from a VM port never leave it; the same datagram from another port does", () => {
      expect(transmitted("traffic/kv2-ipv6")).toBe(3);
      const gw = frames("traffic/gw-1081").filter((f) => f.src === KV2);
      const wire = [...frames("traffic/wire-peer0"), ...frames("traffic/wire-peer1")].filter((f) => f.src === KV2);
      expect([...gw, ...wire].filter((f) => f.ether === "IPv6").map((f) => f.text)).toEqual([]);
      expect(rc("traffic/kv2-dhcp-server"), text("traffic/kv2-dhcp-server.err")).toBe(0);
      expect(text("traffic/kv2-dhcp-server.out")).toMatch(/sent 3 offers from 192\.168\.128\.12:67/);
      expect(gw.filter((f) => f.sport === 1067 && f.dport === 68)).toHaveLength(3);
      expect(gw.filter((f) => f.sport === 67).map((f) => f.text)).toEqual([]);
    });
  });

  describe("traffic through kvm1's bond (switch netns sw on the far ends of eth0/eth1)", () => {
    const wire = () => [...frames("traffic/wire-peer0"), ...frames("traffic/wire-peer1")];

    it("frames of br-secure's VMs leave the bond tagged with VLAN 1081, br-service's with VLAN 1082, never the other", () => {
      const seen = wire();
      const tags = (mac: string) => [...new Set(seen.filter((f) => f.src === mac).map((f) => f.vlan))].sort();
      expect(tags(KV1), text("traffic/wire-peer0.err")).toEqual([1081]);
      expect(tags(KV2)).toEqual([1081]);
      expect(tags(KS1)).toEqual([1082]);
      // captured as received by the switch port: sent by kvm1's bond, from kv1 (192.168.128.11)
      expect(seen.find((f) => f.src === KV1 && echoRequest(f))?.text).toMatch(/ethertype 802\.1Q \(0x8100\).*vlan 1081.*192\.168\.128\.11 > 192\.168\.128\.1: ICMP echo request/);
    });
  });

  describe("backend kbe (own netns and mount namespace: no ovsdb-server, no libvirtd)", () => {
    it("neither an ovsdb-server nor a libvirtd is reachable on kbe", () => {
      expect(rc("backend/no-ovsdb")).toBe(1);
      expect(text("backend/no-ovsdb.err")).toMatch(/database connection failed \(No such file or directory\)/);
      expect(rc("backend/no-libvirtd")).toBe(1);
      expect(text("backend/no-libvirtd.err")).toMatch(/Failed to connect socket to '[^']+': No such file or directory/);
    });

    it("first apply converges every resource; prune finds nothing of ours where no OVS or libvirt runs", () => {
      const first = agentRun("backend/apply1");
      expect(failures(first), first.stderr).toEqual([]);
      expect(first.exitCode).toBe(0);
      expect(first.results.filter((r) => r.changed).map((r) => r.id)).toEqual([
        "kernel-bond[bond0]",
        "vlan-interface[bond0.1081]",
        "vlan-interface[bond0.1082]",
        "interface-address[bond0.1081]",
        "interface-address[bond0.1082]",
        "sysctl[net.ipv4.ip_forward]",
        "nft-table[netfleet]",
        "dnsmasq[secure]",
        "dnsmasq[service]",
      ]);
      const cleanup = first.results.find((r) => r.id === "prune[host]");
      expect(cleanup).toMatchObject({ result: true, changed: false, commands: [] });
      expect(cleanup?.comment).toMatch(/no libvirtd, no ovsdb-server running on this host/);
    });

    it("second apply changes nothing and runs no command", () => {
      const second = agentRun("backend/apply2");
      expect(failures(second), second.stderr).toEqual([]);
      expect(second.exitCode).toBe(0);
      expect(second.summary).toEqual({ ok: 10, changed: 0, failed: 0, pending: 0 });
      expect(busy(second)).toEqual([]);
    });

    it("bond0.1081 and bond0.1082 carry the gateway addresses and gateway MACs of the site", () => {
      const addrs = new Map((JSON.parse(text("backend/addrs.out")) as AddrRow[]).map((r) => [r.ifname, r.addr_info.filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`)]));
      expect(addrs.get("bond0.1081")).toEqual(["192.168.128.1/17"]);
      expect(addrs.get("bond0.1082")).toEqual(["192.168.122.1/24"]);
      expect(addrs.get("eth2")).toEqual(["203.0.113.2/24"]);
      expect(link("backend", "bond0.1081").address).toBe("02:4e:46:00:04:39");
      expect(link("backend", "bond0.1082").address).toBe("02:4e:46:00:04:3a");
      for (const name of ["bond0", "bond0.1081", "bond0.1082"]) expect(link("backend", name).ifalias, name).toBe(OWNER);
      for (const vid of [1081, 1082]) {
        expect(link("backend", `bond0.${vid}`).linkinfo?.info_data).toMatchObject({ protocol: "802.1Q", id: vid });
        expect(link("backend", `bond0.${vid}`).link).toBe("bond0");
      }
      expect(link("backend", "bond0").linkinfo?.info_data?.mode).toBe("active-backup");
      const members = [...links("backend").values()].filter((l) => l.master === "bond0").map((l) => l.ifname).sort();
      expect(members).toEqual(["eth0", "eth1"]);
      expect(link("backend", "eth2").master).toBeUndefined();
    });

    it("forwarding is on (it was off before)", () => {
      expect(text("backend/sysctl-before.out").trim()).toBe("0");
      expect(text("backend/ip_forward.out").trim()).toBe("1");
    });

    it("the nftables table inet netfleet filters our networks only and masquerades them to eth2", () => {
      const table = text("backend/nft-table.out");
      expect(rc("backend/nft-table"), text("backend/nft-table.err")).toBe(0);
      expect(table).toMatch(/^table inet netfleet \{/m);
      // the forward chain decides for our interfaces only: other forwarding on the host is not ours to drop
      expect(table).toMatch(/chain forward \{\s*type filter hook forward priority filter; policy accept;/);
      expect(table).toMatch(/iifname \{ "bond0\.108[12]", "bond0\.108[12]" \} jump from_vms/);
      expect(table).toContain('iifname "bond0.1082" jump out_service');
      expect(table).toContain('iifname "bond0.1081" jump out_secure');
      // open egress: the deny list (with eth2's own subnet, read live) before the accept out of eth2
      const at = table.indexOf("chain out_service {");
      const outService = at < 0 ? "" : table.slice(at, table.indexOf("\n\t}", at));
      const deny = outService.indexOf("goto drop_service");
      expect(deny, outService).toBeGreaterThan(0);
      expect(outService.slice(0, deny)).toContain("203.0.113.0/24");
      expect(outService.search(/oifname "eth2" (goto allow_service|accept)/)).toBeGreaterThan(deny);
      expect(table).toMatch(/oifname "eth2" ip saddr \. ip daddr \. tcp dport @allow_tcp (goto allow_secure|accept)/);
      const nat = /oifname "eth2" ip saddr \{ ([^}]*) \} masquerade/.exec(table);
      expect(nat?.[1]?.split(", ").sort()).toEqual(["192.168.122.0/24", "192.168.128.0/17"]);
    });

    it("dnsmasq serves each network on its gateway address and answers DNS for the site", () => {
      const ps = text("backend/dnsmasq-ps.out");
      for (const net of ["secure", "service"]) expect(ps).toContain(`dnsmasq --conf-file=/run/netfleet/dnsmasq/${net}.conf`);
      expect(rc("traffic/dns-service"), text("traffic/dns-service.err")).toBe(0);
      expect(text("traffic/dns-service.out").trim()).toBe("192.168.122.1");
    });
  });

  describe("traffic through kbe (VMs on kvm1's bridges, kbe reached over the switch)", () => {
    it("service (egress open) reaches the internet behind eth2, masqueraded (the far side has no route back), but not eth2's own subnet", () => {
      expect(rc("traffic/sw-route-back")).not.toBe(0);
      expect(rc("traffic/ping-internet-service"), text("traffic/ping-internet-service.out") + text("traffic/ping-internet-service.err")).toBe(0);
      expect(echoes("traffic/gw-1082", KS1, "192.168.122.150").filter((f) => f.ipDst === "198.51.100.1")).toHaveLength(2);
      // the external subnet: the requests reached the gateway and died in drop_service
      expect(rc("traffic/ping-extsubnet-service")).not.toBe(0);
      expect(echoes("traffic/gw-1082", KS1, "192.168.122.150").filter((f) => f.ipDst === "203.0.113.1")).toHaveLength(2);
      const dropped = /counter packets (\d+) bytes \d+ drop/.exec(text("traffic/nft-drop-service.out"));
      expect(Number(dropped?.[1]), text("traffic/nft-drop-service.out")).toBeGreaterThanOrEqual(2);
    });

    it("secure (allow-list, nothing allowed) does not: its drop chain drops and counts it", () => {
      expect(rc("traffic/ping-internet-secure")).not.toBe(0);
      expect(text("traffic/ping-internet-secure.out")).toMatch(/2 packets transmitted, 0 received/);
      // it got as far as the gateway: the backend's forward chain dropped it, not kvm1's bridge
      expect(echoes("traffic/gw-1081", KV2, "192.168.128.12").filter((f) => f.ipDst === "198.51.100.1")).toHaveLength(2);
      const dropped = /counter packets (\d+) bytes \d+ drop/.exec(text("traffic/nft-forward.out"));
      expect(Number(dropped?.[1]), text("traffic/nft-forward.out")).toBeGreaterThanOrEqual(2);
    });
  });

  // The agent's guards: the wrong host's assignment, the management link (guest/management.sh).
  guardTests({ text, rc });
  // VM bandwidth on the kernel datapath (guest/qos.sh).
  qosTests({ text, rc });
  // The VXLAN overlay on the kernel datapath (guest/vxlan.sh).
  vxlanTests({ text, rc });
});

/**
 * GRE and ERSPAN mirror destinations carry the copies to a remote collector
 * (no lab build: scratch namespaces, prefix nfmirt). A host namespace runs
 * its own Open vSwitch on the userspace datapath with a VM bridge br-lan
 * (two VM namespaces plugged as libvirt plugs them: Interface
 * external_ids:attached-mac) and an underlay bridge br-ul whose internal
 * port holds 192.0.2.1 (OVS's userspace tunnels route the outer packet
 * through an OVS bridge; ovs-vswitchd caches that route from the kernel's,
 * ovs-appctl ovs/route/show); a collector namespace at 192.0.2.10 (and
 * .11) captures IP protocol 47. The mirrors are the agent's own ovs-mirror
 * resource, applied through the engine:
 * - a whole-network GRE mirror (key 7): every echo request and reply between
 *   vm1 and vm2 arrives encapsulated, with the key;
 * - an ERSPAN (version 1, session 3, index 9) mirror of vm1, egress only: vm1's echo
 *   requests arrive, none of the replies it receives (the control in the
 *   same capture: they do cross the bridge, the GRE copies show them).
 * Needs root, openvswitch-switch and tcpdump.
 */
import { execa } from "execa";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecaRunner, read, reconcile, Toolbox } from "@netfleet/agent";
import type { OvsMirrorSpec } from "@netfleet/shared";

const isRoot = process.getuid?.() === 0;
const HOST = "nfmirt-h";
const COLLECTOR = "nfmirt-c";
const VMS = ["nfmirt-v1", "nfmirt-v2"];
const dir = mkdtempSync(join(tmpdir(), "nfmirt-"));
const db = join(dir, "db.sock");
const runner = new ExecaRunner({ timeoutMs: 30_000 });
// ovsRundir: the scratch ovs-vswitchd's control socket (dir/ovs-vswitchd.ctl), which ovs-mirror's revalidator/purge reaches
const tools = new Toolbox({ ovsDb: db, ovsRundir: dir, runDir: join(dir, "run") });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function must(argv: string[]): Promise<string> {
  const r = await runner.run(read(...argv), { allowFailure: true });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")} exited ${r.exitCode}: ${r.stderr.trim()}`);
  return r.stdout;
}
const vsctl = (...args: string[]) => must(["ovs-vsctl", `--db=unix:${db}`, "--timeout=10", ...args]);
const inHost = (...argv: string[]) => must(["ip", "netns", "exec", HOST, ...argv]);
const apply = (specs: OvsMirrorSpec[]) => reconcile(specs, { runner, tools, owner: "mirt", host: { readFile: async () => undefined, listDir: async () => undefined, processArgv: async () => undefined } });

/** One tunnelled copy as it arrived at the collector: outer destination, GRE key, ERSPAN header fields, the inner IPv4/ICMP. */
interface Copy {
  outerDst: string;
  /** GRE protocol type: 0x6558 transparent Ethernet (GRE), 0x88be ERSPAN type II. */
  proto: number;
  key?: number;
  erspan?: { version: number; session: number; index: number };
  inner?: { src: string; dst: string; icmpType?: number };
}

const ipAt = (b: Buffer, o: number) => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;

/**
 * Decodes the frames of a pcap file (libpcap format, Ethernet link type;
 * tcpdump 4.99 does not decode ERSPAN, it prints gre-proto-0x88be): outer
 * IPv4, the GRE header (RFC 2784/2890: C, K, S flags), an ERSPAN type II
 * header (8 bytes: version, VLAN, COS, En, T, session ID, index;
 * draft-foschiano-erspan) when the protocol is 0x88be, then the inner
 * Ethernet frame.
 */
function decodePcap(file: Buffer): Copy[] {
  const out: Copy[] = [];
  let at = 24;
  while (at + 16 <= file.length) {
    const len = file.readUInt32LE(at + 8);
    const f = file.subarray(at + 16, at + 16 + len);
    at += 16 + len;
    if (f.readUInt16BE(12) !== 0x0800) continue;
    const ip = 14;
    if (f[ip + 9] !== 47) continue;
    let g = ip + (f[ip]! & 0x0f) * 4;
    const flags = f.readUInt16BE(g);
    const copy: Copy = { outerDst: ipAt(f, ip + 16), proto: f.readUInt16BE(g + 2) };
    g += 4;
    if (flags & 0x8000) g += 4;
    if (flags & 0x2000) {
      copy.key = f.readUInt32BE(g);
      g += 4;
    }
    if (flags & 0x1000) g += 4;
    if (copy.proto === 0x88be) {
      copy.erspan = { version: f[g]! >> 4, session: f.readUInt16BE(g + 2) & 0x3ff, index: f.readUInt32BE(g + 4) & 0xfffff };
      g += 8;
    }
    if (f.readUInt16BE(g + 12) === 0x0800) {
      const i = g + 14;
      copy.inner = { src: ipAt(f, i + 12), dst: ipAt(f, i + 16), ...(f[i + 9] === 1 ? { icmpType: f[i + (f[i]! & 0x0f) * 4] } : {}) };
    }
    out.push(copy);
  }
  return out;
}

/** The tunnelled copies (IP protocol 47) arriving at the collector while `during` runs: tcpdump -w started, confirmed listening, stopped by pid (bounded). */
async function atCollector(during: () => Promise<void>): Promise<Copy[]> {
  const pcap = join(dir, `collector-${Date.now()}.pcap`);
  const child = execa("ip", ["netns", "exec", COLLECTOR, "tcpdump", "-i", "eth0", "-n", "-U", "-Z", "root", "-w", pcap, "-Q", "in", "--immediate-mode", "ip proto 47"], { reject: false });
  let err = "";
  child.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  const until = Date.now() + 10_000;
  while (!err.includes("listening on")) {
    if (child.exitCode !== null || Date.now() > until) {
      if (child.pid !== undefined) process.kill(child.pid, "SIGKILL");
      await child;
      throw new Error(`tcpdump in ${COLLECTOR} did not start: ${err.trim()}`);
    }
    await sleep(20);
  }
  try {
    await during();
    await sleep(500);
  } finally {
    if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, "SIGTERM");
    await child;
  }
  return decodePcap(readFileSync(pcap));
}

const ping = (from: string, to: string, count: number) => must(["ip", "netns", "exec", from, "ping", "-n", "-q", "-c", String(count), "-i", "0.1", "-W", "1", to]);
const ECHO_REQUEST = 8;
const ECHO_REPLY = 0;
/** Copies carrying an ICMP echo of `type` from `src` to `dst`. */
const echoes = (copies: Copy[], type: number, src: string, dst: string) => copies.filter((c) => c.inner?.icmpType === type && c.inner.src === src && c.inner.dst === dst).length;

describe.skipIf(!isRoot)("GRE and ERSPAN mirror destinations (netns nfmirt-*)", () => {
  const pids: number[] = [];
  const macs: string[] = [];
  const figures: Record<string, number> = {};

  beforeAll(async () => {
    for (const ns of [HOST, COLLECTOR, ...VMS]) {
      await execa("ip", ["netns", "del", ns], { reject: false });
      await must(["ip", "netns", "add", ns]);
    }
    await must(["ovsdb-tool", "create", join(dir, "conf.db"), "/usr/share/openvswitch/vswitch.ovsschema"]);
    const env = ["env", `OVS_RUNDIR=${dir}`, `OVS_LOGDIR=${dir}`, `OVS_DBDIR=${dir}`];
    await inHost(...env, "ovsdb-server", join(dir, "conf.db"), `--remote=punix:${db}`, `--pidfile=${dir}/ovsdb-server.pid`, `--unixctl=${dir}/ovsdb-server.ctl`, `--log-file=${dir}/ovsdb-server.log`, "--detach", "--no-chdir", "-vconsole:off");
    pids.push(Number((await must(["cat", `${dir}/ovsdb-server.pid`])).trim()));
    await vsctl("--no-wait", "init");
    await inHost(...env, "ovs-vswitchd", `unix:${db}`, `--pidfile=${dir}/ovs-vswitchd.pid`, `--unixctl=${dir}/ovs-vswitchd.ctl`, `--log-file=${dir}/ovs-vswitchd.log`, "--detach", "--no-chdir", "-vconsole:off");
    pids.push(Number((await must(["cat", `${dir}/ovs-vswitchd.pid`])).trim()));
    // The underlay: br-ul's internal port holds the host's address, ul0 leads to the collector.
    await must(["ip", "link", "add", "ul0", "netns", HOST, "type", "veth", "peer", "name", "eth0", "netns", COLLECTOR]);
    await inHost("ip", "link", "set", "ul0", "up");
    await must(["ip", "-n", COLLECTOR, "link", "set", "eth0", "up"]);
    await must(["ip", "-n", COLLECTOR, "address", "add", "192.0.2.10/24", "dev", "eth0"]);
    await must(["ip", "-n", COLLECTOR, "address", "add", "192.0.2.11/24", "dev", "eth0"]);
    await vsctl("add-br", "br-ul", "--", "set", "Bridge", "br-ul", "datapath_type=netdev", "--", "add-port", "br-ul", "ul0");
    await inHost("ip", "link", "set", "br-ul", "up");
    await inHost("ip", "address", "add", "192.0.2.1/24", "dev", "br-ul");
    await vsctl("add-br", "br-lan", "--", "set", "Bridge", "br-lan", "datapath_type=netdev");
    for (const [i, ns] of VMS.entries()) {
      const port = `vnet${i + 1}`;
      await must(["ip", "link", "add", port, "netns", HOST, "type", "veth", "peer", "name", "eth0", "netns", ns]);
      await inHost("ip", "link", "set", port, "up");
      await must(["ip", "-n", ns, "link", "set", "eth0", "up"]);
      await must(["ip", "-n", ns, "address", "add", `10.1.0.1${i + 1}/24`, "dev", "eth0"]);
      // TX checksum offload off on the VM side, or TCP/UDP fail through the userspace datapath (ping would not mind).
      await must(["ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off"]);
      macs.push((JSON.parse(await must(["ip", "-n", ns, "-json", "link", "show", "dev", "eth0"])) as { address: string }[])[0]!.address);
      await vsctl("add-port", "br-lan", port, "--", "set", "Interface", port, `external_ids:attached-mac="${macs[i]}"`);
    }
    await ping(VMS[0]!, "10.1.0.12", 2); // neighbours known before the rows below count frames
  }, 60_000);

  afterAll(async () => {
    for (const pid of pids.reverse()) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        /* already gone */
      }
    }
    for (const ns of [HOST, COLLECTOR, ...VMS]) await execa("ip", ["netns", "del", ns], { reject: false });
    rmSync(dir, { recursive: true, force: true });
    process.stderr.write(`mirror-tunnel figures: ${JSON.stringify(figures)}\n`);
  }, 30_000);

  it("whole-network GRE (key 7) and vm1-egress ERSPAN v1 (session 3): the copies reach the collector, encapsulated as asked", async () => {
    const gre: OvsMirrorSpec = { kind: "ovs-mirror", name: "all", bridge: "br-lan", direction: "both", output: { tunnel: { port: "mr-all", type: "gre", remoteIp: "192.0.2.10", key: 7 } } };
    const erspan: OvsMirrorSpec = { kind: "ovs-mirror", name: "ids", bridge: "br-lan", sourceMacs: [macs[0]!], direction: "egress", output: { tunnel: { port: "mr-ids", type: "erspan", remoteIp: "192.0.2.11", key: 3, erspanVersion: 1, erspanIndex: 9 } } };
    const results = await apply([gre, erspan]);
    expect(results.map((r) => [r.id, r.result, r.error])).toEqual([
      ["ovs-mirror[all]", true, undefined],
      ["ovs-mirror[ids]", true, undefined],
    ]);
    // The userspace datapath's native tunnels drop a copy whose remote has no neighbour entry yet (it sends an ARP
    // request instead: ofproto-dpif-xlate.c native_tunnel_output): warm both remotes up before the counted window.
    await ping(VMS[0]!, "10.1.0.12", 2);
    for (let i = 0; i < 50; i++) {
      const neigh = await must(["ovs-appctl", "-t", join(dir, "ovs-vswitchd.ctl"), "tnl/neigh/show"]);
      figures.neighbours = neigh.split("\n").filter((l) => l.startsWith("192.0.2.")).length;
      if (neigh.includes("192.0.2.10 ") && neigh.includes("192.0.2.11 ")) break;
      await sleep(200);
    }
    const copies = await atCollector(async () => {
      await ping(VMS[0]!, "10.1.0.12", 10);
    });
    const toGre = copies.filter((c) => c.outerDst === "192.0.2.10");
    const toErspan = copies.filter((c) => c.outerDst === "192.0.2.11");
    figures.greCopies = toGre.length;
    figures.erspanCopies = toErspan.length;
    // GRE: both directions of the whole network, transparent Ethernet, each with the key.
    expect(echoes(toGre, ECHO_REQUEST, "10.1.0.11", "10.1.0.12")).toBe(10);
    expect(echoes(toGre, ECHO_REPLY, "10.1.0.12", "10.1.0.11")).toBe(10);
    expect(new Set(toGre.map((c) => `${c.proto.toString(16)} key ${c.key}`))).toEqual(new Set(["6558 key 7"]));
    // ERSPAN type II, session 3, index 9: what vm1 sends only; the replies it received (in the GRE copies above) are not selected.
    expect(echoes(toErspan, ECHO_REQUEST, "10.1.0.11", "10.1.0.12")).toBe(10);
    expect(toErspan.filter((c) => c.inner?.icmpType === ECHO_REPLY)).toEqual([]);
    expect(new Set(toErspan.map((c) => JSON.stringify({ proto: c.proto.toString(16), ...c.erspan })))).toEqual(new Set([JSON.stringify({ proto: "88be", version: 1, session: 3, index: 9 })]));
  });
});

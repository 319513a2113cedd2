/**
 * Lab tier, VM mobility: a VM moving between hosts keeps its policy and its
 * traffic (issue 11, item 10), and a static VM whose address changes is not
 * cut off (item 9, field case F14). One lab for this file (prefix nfm).
 *
 * The move is done the way libvirt does it for a live migration: the tap
 * leaves the source host's OVS and a port with the same MAC (libvirt's
 * external_ids) appears on the destination's, then the guest announces
 * itself with RARP frames (QEMU's self-announce: ethertype 0x8035, sent at
 * 0, 50, 200, 450 and 800 ms with its defaults announce-initial=50 ms,
 * announce-step=100 ms, announce-rounds=5). The VM namespace keeps its
 * interface, MAC and address: only the host end of its link moves.
 */
import { execa } from "execa";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecaRunner, read } from "@netfleet/agent";
import { controllerCommand, dhcp, labDown, LabExec, LABNET, labUp, readLabState, type LabOptions, type LabStatus } from "@netfleet/lab";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const inventoryDir = mkdtempSync(join(tmpdir(), "nfm-inventory-"));
cpSync(join(repoRoot, "inventories", "lab"), inventoryDir, { recursive: true });
const lab: LabOptions = { inventoryDir, prefix: "nfm", runDir: "/tmp/nfm-lab", repoRoot };
const runner = new ExecaRunner({ timeoutMs: 150_000 });
const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const PYTHON = "/usr/bin/python3"; // Debian's, with python3-scapy

async function sh(argv: string[]): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const r = await runner.run(read(...argv), { allowFailure: true });
  return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
}

/** Polls until `check` holds; every wait in this file is bounded. */
async function eventually(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(200);
  }
}

/**
 * Sends scapy frames from a namespace: `rarp` (QEMU's announce schedule, from
 * the interface's own MAC) or `renew` (a unicast DHCPREQUEST from `ciaddr`
 * to the server, as a client renewing at T1 does, RFC 2131 §4.3.2).
 */
const SCAPY = String.raw`
import sys, time
from scapy.all import Ether, ARP, IP, UDP, BOOTP, DHCP, sendp, get_if_hwaddr, mac2str
kind, iface = sys.argv[1], sys.argv[2]
mac = get_if_hwaddr(iface)
if kind == "rarp":
    frame = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff", type=0x8035) / ARP(op=3, hwsrc=mac, hwdst=mac, psrc="0.0.0.0", pdst="0.0.0.0")
    last = 0.0
    for at in (0.0, 0.05, 0.2, 0.45, 0.8):
        time.sleep(max(0.0, at - last)); last = at
        sendp(frame, iface=iface, verbose=False)
elif kind == "renew":
    ciaddr, server, server_mac = sys.argv[3], sys.argv[4], sys.argv[5]
    frame = (Ether(src=mac, dst=server_mac) / IP(src=ciaddr, dst=server) / UDP(sport=68, dport=67)
             / BOOTP(op=1, ciaddr=ciaddr, chaddr=mac2str(mac), xid=0x4e460001)
             / DHCP(options=[("message-type", "request"), ("server_id", server), "end"]))
    sendp(frame, iface=iface, verbose=False)
print("sent", kind)
`;

describe.skipIf(!isRoot)("VM mobility (prefix nfm, /tmp/nfm-lab)", () => {
  let status: LabStatus;
  const vm = (name: string) => status.vms.find((v) => v.name === name)!;
  const host = (name: string) => status.hosts.find((h) => h.name === name)!;
  const gateway = (network: string) => status.gateways!.find((g) => g.network === network)!;
  const flows = async (hostName: string, bridge: string) =>
    (await sh(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", `unix:${host(hostName).ovsRundir}/${bridge}.mgmt`, "--no-stats"])).stdout;
  const rollout = (dir: string) => sh(controllerCommand(readLabState(lab.runDir)!.topology, lab, ["rollout", dir, "--yes"]));
  const inNs = (ns: string, ...argv: string[]) => ["ip", "netns", "exec", ns, ...argv];
  const ping = async (ns: string, address: string) => (await sh(inNs(ns, "ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", address))).exitCode === 0;

  beforeAll(async () => {
    await labDown(lab);
    status = await labUp(lab, (line) => process.stderr.write(`${line}\n`));
    expect(status.problems ?? []).toEqual([]);
  }, 300_000);

  afterAll(async () => {
    await labDown(lab);
    rmSync(inventoryDir, { recursive: true, force: true });
  }, 60_000);

  it("rules the agent did not install go, and deleted ones come back, within one pass, reported as drift; a VM port coming and going is lifecycle", async () => {
    const h = host("hosta");
    const v = vm("vma1");
    const ofctl = (...args: string[]) => read("ovs-ofctl", "-O", "OpenFlow13", ...args.slice(0, 1), `unix:${h.ovsRundir}/br-secure.mgmt`, ...args.slice(1));
    const vsctl = (...args: string[]) => read("ovs-vsctl", `--db=unix:${h.ovsDb}`, "--timeout=10", ...args);
    const logFile = join(h.agentDir, "agent.log");
    const logSince = (offset: number) => readFileSync(logFile, "utf8").slice(offset).split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    const ofport = (await runner.run(vsctl("get", "Interface", v.hostPort, "ofport"))).stdout.trim();
    const uplink = (await runner.run(vsctl("get", "Interface", "pb-secure", "ofport"))).stdout.trim();
    const before = readFileSync(logFile, "utf8").length;
    // someone lets vma1 bypass its policy (a higher-priority NORMAL with another cookie) and deletes the uplink's rule
    await runner.run(ofctl("add-flow", `cookie=0x1234,priority=500,in_port=${ofport},actions=NORMAL`));
    await runner.run(ofctl("del-flows", "--strict", `priority=100,in_port=${uplink}`));
    const t = Date.now();
    await eventually("the foreign rule gone and the uplink's back", 15_000, async () => {
      const f = await flows("hosta", "br-secure");
      return !f.includes("cookie=0x1234") && f.includes(`priority=100,in_port=${uplink} actions=goto_table:1`);
    });
    process.stderr.write(`flow drift repaired ${Date.now() - t} ms after the edit\n`);
    await eventually("the repair reported as drift", 10_000, async () => logSince(before).some((e) => e.event === "drift-repaired" && JSON.stringify(e.corrective).includes("vm-port-policy[br-secure]")));
    // a VM port that goes and comes again (a VM restarted) is lifecycle: no corrective report
    const mark = readFileSync(logFile, "utf8").length;
    await runner.run(vsctl("del-port", "br-secure", v.hostPort));
    await eventually("vma1's rules gone", 15_000, async () => !(await flows("hosta", "br-secure")).includes(`dl_src=${v.mac}`));
    await runner.run(vsctl("add-port", "br-secure", v.hostPort, "--", "set", "Interface", v.hostPort, `external_ids:attached-mac="${v.mac}"`, `external_ids:vm-id=${v.name}`, `external_ids:iface-id=${v.name}`));
    await eventually("vma1's rules back", 15_000, async () => (await flows("hosta", "br-secure")).includes(`nw_src=${v.ip}`));
    await sleep(500);
    const events = logSince(mark).filter((e) => e.event === "reconcile" || e.event === "drift-repaired");
    expect(events.some((e) => JSON.stringify(e.lifecycle ?? []).includes("vm-port-policy[br-secure]")), JSON.stringify(events)).toBe(true);
    expect(events.filter((e) => e.event === "drift-repaired" || e.corrective !== undefined), JSON.stringify(events)).toEqual([]);
    expect(await ping(v.namespace, gateway("secure").ip)).toBe(true);
  }, 90_000);

  it("a VM moved from hosta to hostb keeps its traffic (gap in a 20 ms ping from its gateway), its isolation and its allow list", async () => {
    const v = vm("vma1");
    const src = host("hosta");
    const dst = host("hostb");
    const gw = gateway("secure");
    expect(v.ip).toBeDefined();
    expect(await flows("hosta", "br-secure")).toContain(`dl_src=${v.mac}`);
    // 600 echo requests, 20 ms apart (12 s), from the gateway: -D stamps each reply
    const pinger = execa("ip", ["netns", "exec", gw.namespace, "ping", "-D", "-n", "-i", "0.02", "-c", "600", "-W", "1", v.ip!], { reject: false, timeout: 30_000 });
    await sleep(1500);
    const moveStart = Date.now();
    await runner.run(read("ovs-vsctl", `--db=unix:${src.ovsDb}`, "--timeout=10", "--if-exists", "del-port", "br-secure", v.hostPort));
    await runner.run(read("ip", "-n", src.namespace, "link", "set", "dev", v.hostPort, "netns", dst.namespace));
    await runner.run(read("ip", "-n", dst.namespace, "link", "set", "dev", v.hostPort, "up"));
    await runner.run(
      read("ovs-vsctl", `--db=unix:${dst.ovsDb}`, "--timeout=10", "add-port", "br-secure", v.hostPort, "--", "set", "Interface", v.hostPort,
        `external_ids:attached-mac="${v.mac}"`, `external_ids:vm-id=${v.name}`, `external_ids:iface-id=${v.name}`),
    );
    const plugged = Date.now();
    const announce = await sh(inNs(v.namespace, PYTHON, "-c", SCAPY, "rarp", v.interface));
    expect(announce.stdout, announce.stderr).toContain("sent rarp");
    // when the destination's rules for the port were in (polled every 50 ms, bounded)
    let rulesIn = -1;
    for (let i = 0; i < 200 && rulesIn < 0; i++) {
      if ((await flows("hostb", "br-secure")).includes(`nw_src=${v.ip}`)) rulesIn = Date.now() - plugged;
      else await sleep(50);
    }
    const result = await pinger;
    const replies = [...String(result.stdout).matchAll(/^\[(\d+\.\d+)\] .*icmp_seq=(\d+)/gm)].map((m) => ({ at: Number(m[1]) * 1000, seq: Number(m[2]) }));
    expect(replies.length, String(result.stdout).slice(-500)).toBeGreaterThan(100);
    let gap = 0;
    for (let i = 1; i < replies.length; i++) gap = Math.max(gap, replies[i]!.at - replies[i - 1]!.at);
    const lost = 600 - replies.length;
    process.stderr.write(`migration: ${replies.length}/600 echo replies, ${lost} lost, longest gap between replies ${Math.round(gap)} ms; port moved in ${plugged - moveStart} ms; rules in on hostb ${rulesIn} ms after the plug\n`);
    if (gap > 1000 || rulesIn < 0) {
      const log = readFileSync(join(dst.agentDir, "agent.log"), "utf8").split("\n").filter((l) => l.includes('"reconcile"') || l.includes("lease")).slice(-8);
      process.stderr.write(`hostb agent, last passes:\n${log.join("\n")}\n`);
    }
    // Traffic came back on the new host: replies after the move, and none missing at the end.
    // The gap itself is a measurement (issue 11's goal: at most 1 s), printed above, not a timed assertion.
    expect(replies.some((r) => r.at > plugged + 100), "echo replies from vma1 at its new place").toBe(true);
    expect(replies.at(-1)!.seq, "the last requests were answered").toBeGreaterThan(590);
    // the source host's rules went with the port; the destination's came with it
    await eventually("vma1's rules gone from hosta", 10_000, async () => !(await flows("hosta", "br-secure")).includes(`dl_src=${v.mac}`));
    expect(await flows("hostb", "br-secure")).toContain(`nw_src=${v.ip}`);
    // its policy holds where it is now: its allow list by address, its isolation from vma3 (isolated)
    const connect = async (ip: string) => (await sh(inNs(v.namespace, process.execPath, LABNET, "connect", ip, "80", "2000"))).stdout.trim();
    expect(await connect("198.51.100.10")).toBe("inet 203.0.113.1");
    expect(await connect("198.51.100.20")).toBe("");
    expect(await ping(v.namespace, gw.ip)).toBe(true);
    expect(await ping(v.namespace, vm("vma3").ip!)).toBe(false);
    // a spoofed source from its new port is dropped there too: looked for at the gateway's interface,
    // beside the same VM's echo requests from its own address (the control)
    const spoofed = "10.81.0.99";
    const cap = execa("ip", ["netns", "exec", gw.namespace, "tcpdump", "-l", "-n", "-i", gw.interface, "icmp[icmptype] == icmp-echo and (src host", spoofed, "or src host", v.ip!, ")"], { reject: false, timeout: 15_000 });
    await sleep(800);
    await runner.run(read("ip", "-n", v.namespace, "address", "add", `${spoofed}/32`, "dev", v.interface));
    try {
      // own address first: the gateway's neighbour entry is fresh, so the spoofed echo goes out as IP (not held on ARP)
      await sh(inNs(v.namespace, "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", "-I", v.ip!, gw.ip));
      await sh(inNs(v.namespace, "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", "-I", spoofed, gw.ip));
    } finally {
      await runner.run(read("ip", "-n", v.namespace, "address", "del", `${spoofed}/32`, "dev", v.interface));
    }
    await sleep(300);
    cap.kill("SIGINT");
    const seen = String((await cap).stdout);
    expect(seen, "the control: its own address reaches the gateway").toContain(`${v.ip} > ${gw.ip}`);
    expect(seen, "the spoofed source never arrives").not.toContain(`${spoofed} >`);
  }, 120_000);

  it("a static VM whose ip changes keeps the old address until it renews; the renew passes; then the new one works", async () => {
    const v = vm("vmb1");
    const oldIp = v.ip!;
    const newIp = "10.81.0.23";
    const gw = gateway("secure");
    const file = join(inventoryDir, "networks.yaml");
    const text = readFileSync(file, "utf8");
    expect(text).toContain(`ip: ${oldIp}`);
    writeFileSync(file, text.replace(`ip: ${oldIp}`, `ip: ${newIp}`));
    const r = await rollout(inventoryDir);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    // hostb now allows both: the new static address, and the old one while its lease lasts
    await eventually("both addresses in vmb1's rules", 15_000, async () => {
      const f = await flows("hostb", "br-secure");
      return f.includes(`nw_src=${newIp}`) && f.includes(`nw_src=${oldIp}`);
    });
    expect(await ping(v.namespace, gw.ip), "the old address still works").toBe(true);
    // the VM renews from its old address (unicast to the server): the request passes and dnsmasq answers it
    const cap = execa("ip", ["netns", "exec", v.namespace, "tcpdump", "-l", "-n", "-c", "1", "-i", v.interface, "udp and src port 67 and src host", gw.ip], { reject: false, timeout: 10_000 });
    await sleep(800);
    const renew = await sh(inNs(v.namespace, PYTHON, "-c", SCAPY, "renew", v.interface, oldIp, gw.ip, gw.mac));
    expect(renew.stdout, renew.stderr).toContain("sent renew");
    const answer = await cap;
    expect(String(answer.stdout), "dnsmasq answered the renew").toMatch(/BOOTP\/DHCP, Reply/);
    // the client's next exchange gets the new address
    const t = readLabState(lab.runDir)!.topology;
    const lease = await dhcp(new LabExec(), t, t.vms.find((x) => x.name === v.name)!);
    expect(lease.ip).toBe(newIp);
    await eventually("vmb1 reaches its gateway from the new address", 10_000, () => ping(v.namespace, gw.ip));
    // the old address is no longer its lease: its rules go, and it is another VM's to claim no more
    await eventually("the old address gone from vmb1's rules", 20_000, async () => !(await flows("hostb", "br-secure")).includes(`nw_src=${oldIp}`));
  }, 120_000);
});

/**
 * Lab tier, the backend's dnsmasq (issue 12, points 4, 7 and 8): per-network
 * MTU announced by DHCP, router: false (one default route for a VM with
 * NICs on two networks), a network without DHCP that still answers DNS,
 * exact vs wildcard allowed names (what resolves, and what joins the nft
 * set, read with `nft list set` on the backend), a DNS query log, dnsmasq
 * unprivileged, a dnsmasq killed -9 back within 2 s (measured), leases
 * surviving dnsmasq and agent restarts and a reboot's empty run dir (field
 * case F15: no DHCPNAK). One lab for this file (prefix nfd, /tmp/nfd-lab).
 *
 * Every answer is looked for where it lands: DHCP options as the VM's
 * client received them (busybox udhcpc's hook environment), DNS answers as
 * dig in the VM namespace got them, set elements in the backend's kernel,
 * the process's credentials in /proc. Each refusal has its control beside
 * it (the upstream does answer the refused name: an open network gets it).
 */
import { execa } from "execa";
import { appendFileSync, chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecaRunner, read } from "@netfleet/agent";
import { DNSMASQ_LOG_MAX_BYTES } from "../../packages/agent/src/resources/dnsmasq.ts";
import { dnsSetName } from "../../packages/controller/src/compile/compile.ts";
import { controllerCommand, labDown, labStartAgent, labStopAgent, labUp, readLabState, type LabOptions, type LabStatus } from "@netfleet/lab";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const inventoryDir = mkdtempSync(join(tmpdir(), "nfd-inventory-"));
const work = mkdtempSync(join(tmpdir(), "nfd-work-"));
chmodSync(work, 0o755);
cpSync(join(repoRoot, "inventories", "lab"), inventoryDir, { recursive: true });
const lab: LabOptions = { inventoryDir, prefix: "nfd", runDir: "/tmp/nfd-lab", repoRoot };
const runner = new ExecaRunner({ timeoutMs: 150_000 });
const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const PYTHON = "/usr/bin/python3"; // Debian's, with python3-scapy

async function sh(argv: string[]): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const r = await runner.run(read(...argv), { allowFailure: true });
  return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
}

async function eventually(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(100);
  }
}

/** Records what the DHCP client received (udhcpc's environment); with NFD_APPLY it also configures the address and default route. */
const HOOK = `#!/bin/sh
case "$1" in
  bound|renew)
    printf 'ip=%s\\nrouter=%s\\nmtu=%s\\ndns=%s\\nserverid=%s\\n' "$ip" "$router" "$mtu" "$dns" "$serverid" > "$NFD_OUT"
    if [ -n "$NFD_APPLY" ]; then
      ip -4 addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface"
      if [ -n "$router" ]; then ip route replace default via "\${router%% *}" dev "$interface"; fi
    fi ;;
  deconfig) [ -n "$NFD_APPLY" ] && ip link set dev "$interface" up ;;
esac
exit 0
`;
const hook = join(work, "udhcpc-hook.sh");
writeFileSync(hook, HOOK, { mode: 0o755 });

/** One DHCP exchange from `ns` (bounded: 3 discovers 1 s apart), asking for the MTU option; what the client got, or undefined. */
async function dhcpFrom(ns: string, iface: string, apply = false): Promise<Record<string, string> | undefined> {
  const out = join(work, `${ns}-${iface}.env`);
  rmSync(out, { force: true });
  const env = ["env", `NFD_OUT=${out}`, ...(apply ? ["NFD_APPLY=1"] : [])];
  await sh(["ip", "netns", "exec", ns, ...env, "busybox", "udhcpc", "-i", iface, "-f", "-q", "-n", "-t", "3", "-T", "1", "-A", "1", "-O", "mtu", "-s", hook]);
  try {
    return Object.fromEntries(readFileSync(out, "utf8").trim().split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
  } catch {
    return undefined;
  }
}

/** dig from a namespace: the response code and the A records. */
async function dig(ns: string, server: string, name: string): Promise<{ status: string; answers: string[] }> {
  const r = await sh(["ip", "netns", "exec", ns, "dig", "+tries=1", "+time=1", `@${server}`, name, "A"]);
  const status = /status: ([A-Z]+)/.exec(r.stdout)?.[1] ?? "NO-ANSWER";
  const answers = [...r.stdout.matchAll(/^\S+\s+\d+\s+IN\s+A\s+(\S+)$/gm)].map((m) => m[1]!);
  return { status, answers };
}

/** A unicast DHCPREQUEST from `ciaddr` to the server, as a running client renewing at T1 sends it (RFC 2131 §4.3.2). */
const RENEW = String.raw`
import sys
from scapy.all import Ether, IP, UDP, BOOTP, DHCP, sendp, get_if_hwaddr, mac2str
iface, ciaddr, server, server_mac = sys.argv[1:5]
mac = get_if_hwaddr(iface)
sendp(Ether(src=mac, dst=server_mac) / IP(src=ciaddr, dst=server) / UDP(sport=68, dport=67)
      / BOOTP(op=1, ciaddr=ciaddr, chaddr=mac2str(mac), xid=0x4e460d15)
      / DHCP(options=[("message-type", "request"), "end"]), iface=iface, verbose=False)
print("sent renew")
`;

describe.skipIf(!isRoot)("the backend's dnsmasq (prefix nfd, /tmp/nfd-lab)", () => {
  let status: LabStatus;
  const vm = (name: string) => status.vms.find((v) => v.name === name)!;
  const backend = () => status.hosts.find((h) => h.role === "backend")!;
  const gateway = (network: string) => status.gateways!.find((g) => g.network === network)!;
  const dnsmasqDir = () => join(backend().agentDir, "dnsmasq");
  const stateDir = () => join(backend().agentDir, "state", "dnsmasq");
  const pidOf = (network: string) => Number(readFileSync(join(dnsmasqDir(), `${network}.pid`), "utf8").trim());
  const isOurs = (pid: number, network: string) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes(`--conf-file=${join(dnsmasqDir(), `${network}.conf`)}`);
    } catch {
      return false;
    }
  };
  const nftSet = async (set: string) => (await sh(["ip", "netns", "exec", backend().namespace, "nft", "list", "set", "inet", "netfleet", set])).stdout;
  const rollout = () => sh(controllerCommand(readLabState(lab.runDir)!.topology, lab, ["rollout", inventoryDir, "--yes"]));

  beforeAll(async () => {
    const file = join(inventoryDir, "networks.yaml");
    let text = readFileSync(file, "utf8");
    // secure: an exact name (mirror.inet.test, already there) and a wildcard, each allowed to vmb1 (so each has a set)
    text = text.replace("dns_names: [mirror.inet.test]", 'dns_names: [mirror.inet.test, "*.www.inet.test"]');
    text = text.replace("          - name: mirror.inet.test\n            ports: [80]\n", '          - name: mirror.inet.test\n            ports: [80]\n          - name: "*.www.inet.test"\n            ports: [80]\n');
    // datain: a network below the uplink's 1500
    text = text.replace("    gateway: 10.83.0.1\n", "    gateway: 10.83.0.1\n    mtu: 1400\n");
    expect(text).toContain('"*.www.inet.test"\n            ports: [80]');
    expect(text).toContain("mtu: 1400");
    writeFileSync(file, text);
    await labDown(lab);
    status = await labUp(lab, (line) => process.stderr.write(`${line}\n`));
    expect(status.problems ?? []).toEqual([]);
  }, 400_000);

  afterAll(async () => {
    await labDown(lab);
    rmSync(inventoryDir, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }, 60_000);

  it("dnsmasq runs as the unprivileged dnsmasq user with CAP_NET_ADMIN only; its lease file is in the state dir and its own, its config root's", async () => {
    const uid = (await sh(["id", "-u", "dnsmasq"])).stdout.trim();
    expect(uid).toMatch(/^\d+$/);
    for (const network of ["secure", "service", "datain"]) {
      const pid = pidOf(network);
      expect(isOurs(pid, network)).toBe(true);
      const procStatus = readFileSync(`/proc/${pid}/status`, "utf8");
      expect(/^Uid:\s+(.*)$/m.exec(procStatus)?.[1]?.split(/\s+/), network).toEqual([uid, uid, uid, uid]);
      // linux/capability.h: CAP_NET_ADMIN = 12 (DHCP's ARP writes, nftset's netlink), CAP_NET_BIND_SERVICE = 10.
      // dnsmasq keeps the latter only when it started while an address of its interface was still in DAD
      // (an IPv6 link-local one: it binds it later; dnsmasq.c, need_cap_net_bind_service). Nothing else.
      const capEff = BigInt(`0x${/^CapEff:\s+(\S+)$/m.exec(procStatus)?.[1] ?? "ffffffffffffffff"}`);
      process.stderr.write(`dnsmasq of ${network}: uid ${uid}, CapEff 0x${capEff.toString(16)}\n`);
      expect(capEff & (1n << 12n), `${network}: CAP_NET_ADMIN kept`).toBe(1n << 12n);
      expect(capEff & ~((1n << 12n) | (1n << 10n)), `${network}: no capability beyond NET_ADMIN and NET_BIND_SERVICE`).toBe(0n);
      const leases = statSync(join(stateDir(), `${network}.leases`));
      expect([String(leases.uid), (leases.mode & 0o777).toString(8)]).toEqual([uid, "660"]);
      const conf = statSync(join(dnsmasqDir(), `${network}.conf`));
      expect([conf.uid, (conf.mode & 0o777).toString(8)]).toEqual([0, "644"]);
    }
    // the control: the agent that started it is root with its full set
    const agentPid = Number(readFileSync(join(backend().agentDir, "agent.pid"), "utf8").trim());
    const agentCaps = BigInt(`0x${/^CapEff:\s+(\S+)$/m.exec(readFileSync(`/proc/${agentPid}/status`, "utf8"))?.[1] ?? "0"}`);
    expect(agentCaps & ~((1n << 12n) | (1n << 10n))).not.toBe(0n);
    expect(readdirSync(dnsmasqDir()).filter((n) => n.endsWith(".leases"))).toEqual([]);
  });

  it("the MTU each network announces is what the VM's DHCP client receives (option 26), with the gateway as router", async () => {
    const datain = await dhcpFrom(vm("vmb3").namespace, "eth0");
    const secure = await dhcpFrom(vm("vma1").namespace, "eth0");
    expect(datain, "vmb3 got an answer").toBeDefined();
    expect(secure, "vma1 got an answer").toBeDefined();
    expect(datain!.mtu).toBe("1400");
    expect(datain!.router).toBe(gateway("datain").ip);
    // the control: a network without its own mtu announces the uplink's
    expect(secure!.mtu).toBe("1500");
    expect(secure!.router).toBe(gateway("secure").ip);
  }, 60_000);

  it("a plain name resolves exactly and its subdomain does not; a wildcard's subdomain resolves and the bare name does not; the sets get only the allowed answers; every query is in the log", async () => {
    const client = vm("vmb1").namespace;
    const gw = gateway("secure").ip;
    const exactSet = dnsSetName("mirror.inet.test");
    const wildSet = dnsSetName("*.www.inet.test");
    const open = vm("vma2").namespace; // service: open DNS, the same upstream
    // controls: the upstream answers every one of these names
    expect(await dig(open, gateway("service").ip, "sub.mirror.inet.test")).toEqual({ status: "NOERROR", answers: ["198.51.100.20"] });
    expect(await dig(open, gateway("service").ip, "www.inet.test")).toEqual({ status: "NOERROR", answers: ["198.51.100.10"] });
    expect(await nftSet(exactSet)).not.toContain("198.51.100.20");
    expect(await nftSet(wildSet)).not.toContain("198.51.100.10");
    // refused first, and the sets looked at: a refused name adds nothing
    expect(await dig(client, gw, "sub.mirror.inet.test")).toEqual({ status: "NXDOMAIN", answers: [] });
    expect(await dig(client, gw, "www.inet.test")).toEqual({ status: "REFUSED", answers: [] });
    expect(await dig(client, gw, "other.inet.test")).toEqual({ status: "REFUSED", answers: [] });
    expect(await nftSet(exactSet)).not.toContain("198.51.100.20");
    expect(await nftSet(wildSet)).not.toContain("198.51.100.10");
    // allowed: the exact name and a subdomain of the wildcard, each into its own set
    expect(await dig(client, gw, "mirror.inet.test")).toEqual({ status: "NOERROR", answers: ["198.51.100.20"] });
    expect(await dig(client, gw, "a.www.inet.test")).toEqual({ status: "NOERROR", answers: ["198.51.100.10"] });
    const exact = await nftSet(exactSet);
    const wild = await nftSet(wildSet);
    expect(exact).toContain("198.51.100.20");
    expect(exact).not.toContain("198.51.100.10");
    expect(wild).toContain("198.51.100.10");
    expect(wild).not.toContain("198.51.100.20");
    // the query log: the allowed query with its answer, the refused ones with their refusal
    const log = readFileSync(join(dnsmasqDir(), "secure.log"), "utf8");
    const ip = vm("vmb1").ip!;
    expect(log).toContain(`query[A] a.www.inet.test from ${ip}`);
    expect(log).toContain("reply a.www.inet.test is 198.51.100.10");
    expect(log).toMatch(new RegExp(`query\\[A\\] www\\.inet\\.test from ${ip.replaceAll(".", "\\.")}\\n.*config error is REFUSED`));
    expect(log).toMatch(new RegExp(`query\\[A\\] sub\\.mirror\\.inet\\.test from ${ip.replaceAll(".", "\\.")}\\n.*config sub\\.mirror\\.inet\\.test is NXDOMAIN`));
  }, 60_000);

  it("dnsmasq killed -9 answers DNS and DHCP again within 2 s, with its lease table intact", async () => {
    const leasesFile = join(stateDir(), "secure.leases");
    const before = readFileSync(leasesFile, "utf8").trim().split("\n").map((l) => l.split(" ").slice(1, 3).join(" ")).sort();
    expect(before.length).toBeGreaterThan(0);
    const client = vm("vma1").namespace;
    const gw = gateway("secure").ip;
    expect((await dig(client, gw, "gw.secure.lab.test")).answers).toEqual([gw]);
    const old = pidOf("secure");
    const killed = Date.now();
    process.kill(old, "SIGKILL");
    let dnsBack = -1;
    let newPid = 0;
    for (let i = 0; i < 100 && dnsBack < 0; i++) {
      const r = await dig(client, gw, "gw.secure.lab.test");
      if (r.answers.includes(gw)) dnsBack = Date.now() - killed;
      else await sleep(20);
    }
    const answer = await dhcpFrom(vm("vmb4").namespace, "eth0");
    const dhcpBack = Date.now() - killed;
    newPid = pidOf("secure");
    process.stderr.write(`dnsmasq kill -9 -> DNS answering again after ${dnsBack} ms, a full DHCP exchange done ${dhcpBack} ms after the kill (pid ${old} -> ${newPid})\n`);
    // where the time went: the watcher's exit event and the dnsmasq pass, from the agent's log
    const agentLog = readFileSync(join(backend().agentDir, "agent.log"), "utf8").split("\n").flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return []; // not an event line (a warning on stderr)
      }
    });
    const exit = agentLog.find((e) => e.event === "dnsmasq-exit" && e.pid === old);
    const pass = agentLog.find((e) => e.event === "reconcile" && String(e.pass).includes("dnsmasq") && Date.parse(String(e.ts)) >= killed);
    process.stderr.write(`  exit seen ${exit ? Date.parse(String(exit.ts)) - killed : "?"} ms after the kill; the dnsmasq pass ended ${pass ? Date.parse(String(pass.ts)) - killed : "?"} ms after it (${pass?.ms ?? "?"} ms long)\n`);
    expect(exit, "the watcher saw the exit").toBeDefined();
    expect(dnsBack, "DNS answered again").toBeGreaterThan(0);
    expect(dnsBack).toBeLessThan(2000);
    const held = before.find((l) => l.startsWith(`${vm("vmb4").mac} `))?.split(" ")[1];
    expect(held, "vmb4 held a lease before").toBeDefined();
    expect(answer?.ip, "DHCP answered again, with vmb4's address").toBe(held);
    expect(dhcpBack).toBeLessThan(4000);
    expect(newPid).not.toBe(old);
    expect(isOurs(newPid, "secure")).toBe(true);
    const after = readFileSync(leasesFile, "utf8").trim().split("\n").map((l) => l.split(" ").slice(1, 3).join(" ")).sort();
    for (const lease of before) expect(after).toContain(lease);
  }, 60_000);

  it("a log past its size limit is rotated: renamed to .1, a new one of dnsmasq's user made, and dnsmasq writes there after SIGUSR2", async () => {
    const log = join(dnsmasqDir(), "secure.log");
    const uid = Number((await sh(["id", "-u", "dnsmasq"])).stdout.trim());
    appendFileSync(log, `${"#".repeat(1023)}\n`.repeat(DNSMASQ_LOG_MAX_BYTES / 1024 + 1));
    await eventually("the agent rotated secure.log", 10_000, async () => existsSync(`${log}.1`) && existsSync(log) && statSync(log).size < DNSMASQ_LOG_MAX_BYTES);
    const fresh = statSync(log);
    expect([fresh.uid, (fresh.mode & 0o777).toString(8)]).toEqual([uid, "660"]);
    expect(statSync(`${log}.1`).size).toBeGreaterThan(DNSMASQ_LOG_MAX_BYTES);
    expect(await dig(vm("vmb1").namespace, gateway("secure").ip, "b.www.inet.test")).toEqual({ status: "NOERROR", answers: ["198.51.100.10"] });
    await eventually("the next query in the new log", 5_000, async () => readFileSync(log, "utf8").includes("query[A] b.www.inet.test"));
    expect(readFileSync(`${log}.1`, "utf8")).not.toContain("query[A] b.www.inet.test");
  }, 60_000);

  it("leases survive an agent restart, a dnsmasq restart and a reboot's empty run dir: a running VM's renew is ACKed with its address, no DHCPNAK (F15)", async () => {
    const v = vm("vmb4");
    const gw = gateway("secure");
    const leasesFile = join(stateDir(), "secure.leases");
    const held = readFileSync(leasesFile, "utf8").split("\n").find((l) => l.split(" ")[1] === v.mac)?.split(" ")[2];
    expect(held, "vmb4's lease").toMatch(/^10\.81\.0\.\d+$/);
    // the backend goes down: agent stopped, our dnsmasqs stopped (by pid), the run dir (a tmpfs) empty after the reboot
    expect(await labStopAgent(lab, "backend")).toBeDefined();
    for (const network of ["secure", "service", "datain"]) {
      const pid = pidOf(network);
      if (isOurs(pid, network)) process.kill(pid, "SIGTERM");
      await eventually(`dnsmasq ${pid} gone`, 10_000, async () => !isOurs(pid, network));
    }
    rmSync(dnsmasqDir(), { recursive: true, force: true });
    labStartAgent(lab, "backend");
    await eventually("the agent started secure's dnsmasq again", 90_000, async () => {
      try {
        return isOurs(pidOf("secure"), "secure");
      } catch {
        return false;
      }
    });
    expect(readFileSync(leasesFile, "utf8")).toContain(` ${v.mac} ${held} `);
    // vmb4, still running with its address, renews: unicast to the gateway, the answer looked for in its namespace
    const cap = execa("ip", ["netns", "exec", v.namespace, "tcpdump", "-l", "-n", "-v", "-c", "1", "-i", v.interface, "udp and src port 67"], { reject: false, timeout: 10_000 });
    await sleep(800);
    const renew = await sh(["ip", "netns", "exec", v.namespace, PYTHON, "-c", RENEW, v.interface, held!, gw.ip, gw.mac]);
    expect(renew.stdout, renew.stderr).toContain("sent renew");
    const reply = String((await cap).stdout);
    expect(reply, "dnsmasq answered the renew").toMatch(/DHCP-Message.*: ACK/);
    expect(reply).toContain(`Your-IP ${held}`);
    // and a fresh exchange gets the same address
    expect((await dhcpFrom(v.namespace, v.interface))?.ip).toBe(held);
    const log = readFileSync(join(dnsmasqDir(), "secure.log"), "utf8");
    expect(log).toContain(`DHCPACK(${gw.interface}) ${held} ${v.mac}`);
    expect(log).not.toContain("DHCPNAK");
  }, 150_000);

  it("a lease file at its old place (the run dir, before this agent) moves to the state dir once, every lease kept", async () => {
    const leasesFile = join(stateDir(), "secure.leases");
    const legacy = join(dnsmasqDir(), "secure.leases");
    const before = readFileSync(leasesFile, "utf8");
    expect(before.trim().split("\n").length).toBeGreaterThan(0);
    // the host as an older agent left it: the lease file in the run dir, none in the state dir, dnsmasq stopped
    expect(await labStopAgent(lab, "backend")).toBeDefined();
    const pid = pidOf("secure");
    process.kill(pid, "SIGTERM");
    await eventually(`dnsmasq ${pid} gone`, 10_000, async () => !isOurs(pid, "secure"));
    writeFileSync(legacy, before);
    rmSync(leasesFile);
    labStartAgent(lab, "backend");
    await eventually("secure's dnsmasq running again with its leases in the state dir", 90_000, async () => {
      try {
        return isOurs(pidOf("secure"), "secure") && existsSync(leasesFile);
      } catch {
        return false;
      }
    });
    expect(existsSync(legacy), "the old file is gone").toBe(false);
    const after = readFileSync(leasesFile, "utf8");
    for (const line of before.trim().split("\n")) expect(after).toContain(line.split(" ").slice(1, 3).join(" "));
  }, 150_000);

  it("router: false offers no default route (a VM with NICs on secure and datain has one); a network without DHCP makes no offer while its DNS answers", async () => {
    const file = join(inventoryDir, "networks.yaml");
    let text = readFileSync(file, "utf8");
    text = text.replace("    mtu: 1400\n", "    mtu: 1400\n    router: false\n");
    text = text.replace("    dhcp: { start: 10.82.0.100, end: 10.82.0.199, lease_time: 1h }\n", "    dhcp: false\n");
    expect(text).toContain("router: false");
    expect(text).toContain("dhcp: false");
    writeFileSync(file, text);
    const r = await rollout();
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    const conf = (network: string) => readFileSync(join(dnsmasqDir(), `${network}.conf`), "utf8");
    await eventually("datain without router and service without DHCP, both running", 60_000, async () => {
      try {
        return conf("datain").includes("dhcp-option=option:router\n") && !conf("service").includes("dhcp-range") && isOurs(pidOf("datain"), "datain") && isOurs(pidOf("service"), "service");
      } catch {
        return false;
      }
    });
    // vmb3's NIC (datain) moves into vma1's namespace (secure) as its second NIC
    const a = vm("vma1").namespace;
    const b = vm("vmb3").namespace;
    // renamed where its new name is free: before the move into vma1 (which has an eth0), after the move back
    const moveNic = async (from: string, to: string, oldName: string, newName: string, renameFirst: boolean) => {
      const rename = renameFirst ? [["-n", from, "link", "set", oldName, "name", newName]] : [["-n", to, "link", "set", oldName, "name", newName]];
      const move = [["-n", from, "link", "set", renameFirst ? newName : oldName, "netns", to]];
      const steps = [["-n", from, "link", "set", oldName, "down"], ...(renameFirst ? [...rename, ...move] : [...move, ...rename]), ["-n", to, "link", "set", newName, "up"]];
      for (const argv of steps) {
        const x = await sh(["ip", ...argv]);
        expect(x.exitCode, `ip ${argv.join(" ")}: ${x.stderr}`).toBe(0);
      }
    };
    await moveNic(b, a, "eth0", "eth1", true);
    try {
      const second = await dhcpFrom(a, "eth1", true);
      const first = await dhcpFrom(a, "eth0", true);
      expect(second, "datain answered").toBeDefined();
      expect(second!.ip).toMatch(/^10\.83\.0\.\d+$/);
      expect(second!.router).toBe("");
      expect(second!.mtu).toBe("1400");
      expect(first!.router, "the control: secure still offers its gateway").toBe(gateway("secure").ip);
      const routes = JSON.parse((await sh(["ip", "-n", a, "-j", "route", "show", "default"])).stdout) as { gateway?: string; dev: string }[];
      expect(routes.map((x) => `${x.gateway} ${x.dev}`)).toEqual([`${gateway("secure").ip} eth0`]);
    } finally {
      await moveNic(a, b, "eth1", "eth0", false);
    }
    // the control for the next row: datain (DHCP) still answers vmb3, back on its own
    expect((await dhcpFrom(b, "eth0", true))?.ip).toMatch(/^10\.83\.0\.\d+$/);
    // service has no DHCP now: vma2's discover gets no answer at its interface; its DNS still answers
    const v = vm("vma2");
    const cap = execa("ip", ["netns", "exec", v.namespace, "tcpdump", "-l", "-n", "-i", v.interface, "udp and src port 67"], { reject: false, timeout: 15_000 });
    await sleep(800);
    expect(await dhcpFrom(v.namespace, v.interface)).toBeUndefined();
    cap.kill("SIGINT");
    expect(String((await cap).stdout)).not.toMatch(/BOOTP\/DHCP, Reply/);
    expect(await dig(v.namespace, gateway("service").ip, "www.inet.test")).toEqual({ status: "NOERROR", answers: ["198.51.100.10"] });
    expect(await dig(v.namespace, gateway("service").ip, "vma2.service.lab.test")).toEqual({ status: "NOERROR", answers: [v.ip!] });
  }, 150_000);
});

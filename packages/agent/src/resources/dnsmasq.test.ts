import { describe, expect, it } from "vitest";
import type { DnsmasqSpec } from "@netfleet/shared";
import { Toolbox } from "../tools.ts";
import { dnsmasq, dnsmasqConf, dnsmasqFiles, dnsmasqHosts, dnsmasqUser, parseStat, type DnsmasqObservation } from "./dnsmasq.ts";
import { allowedNameLines } from "./dnsmasq-names.ts";
import { fixture, fixtureContext as ctx } from "./fixtures.ts";

/** A config as dnsmasq reads it: `key=value` lines (a bare flag has value ""), comments skipped. */
function options(conf: string): [string, string][] {
  return conf
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.startsWith("#"))
    .map((l) => (l.includes("=") ? [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)] : [l, ""]));
}
const values = (conf: string, key: string) => options(conf).filter(([k]) => k === key).map(([, v]) => v);
/** The DHCP options a config sets: option name → its value ("" when given without one). */
const dhcpOptions = (conf: string) => new Map(values(conf, "dhcp-option").map((v) => [v.split(",")[0]!, v.split(",").slice(1).join(",")]));

/** The secure network of the lab: an allowlist network with a static and a DHCP VM. */
const SECURE: DnsmasqSpec = {
  kind: "dnsmasq",
  name: "secure",
  interface: "gw-secure",
  address: "10.81.0.1",
  netmask: "255.255.255.0",
  domain: "secure.lab.test",
  dhcp: { start: "10.81.0.100", end: "10.81.0.199", leaseTime: "1h" },
  router: true,
  mtu: 1500,
  maxTtl: 600,
  hosts: [
    { name: "vma1", mac: "52:54:00:81:0a:01", ip: "10.81.0.11" },
    { name: "vmb9", mac: "52:54:00:81:0b:09" },
  ],
  dns: "allowlist",
  upstream: ["203.0.113.53"],
  allowNames: [{ name: "mirror.inet.test", set: "dns_9a2a437a32e5" }, { name: "docs.inet.test" }],
};

describe("dnsmasq", () => {
  const spec = SECURE;
  const account = dnsmasqUser(fixture("dnsmasq/debian-passwd.txt"), fixture("dnsmasq/debian-group.txt"));
  const files = dnsmasqFiles("/run/netfleet", "secure", "/var/lib/netfleet-agent");
  const conf = dnsmasqConf(spec, files, "fixture", account);
  const running: DnsmasqObservation = { conf, hosts: dnsmasqHosts(spec), pid: 4242, account, leases: true };

  it("listens on the gateway address of its own interface only", () => {
    expect(values(conf, "interface")).toEqual(["gw-secure"]);
    expect(values(conf, "listen-address")).toEqual(["10.81.0.1"]);
    expect(values(conf, "bind-interfaces")).toEqual([""]);
    expect(values(conf, "except-interface")).toEqual(["lo"]);
  });

  it("offers the gateway itself as router (never 0.0.0.0, which dnsmasq reads as its own address), the MTU as option 26, and itself as DNS server", () => {
    const opts = dhcpOptions(conf);
    expect(opts.get("option:router")).toBe("10.81.0.1");
    expect(opts.get("option:dns-server")).toBe("10.81.0.1");
    expect(opts.get("option:mtu")).toBe("1500");
    expect(dhcpOptions(dnsmasqConf({ ...spec, mtu: 9000 }, files, "fixture", account)).get("option:mtu")).toBe("9000");
    expect(values(conf, "dhcp-range")).toEqual(["10.81.0.100,10.81.0.199,255.255.255.0,1h"]);
    expect(values(conf, "no-ping")).toEqual([""]);
    expect(values(conf, "dhcp-authoritative")).toEqual([""]);
  });

  it("router: false gives the router option with no value, which dnsmasq does not send (and no other router line)", () => {
    const c = dnsmasqConf({ ...spec, router: false }, files, "fixture", account);
    expect(values(c, "dhcp-option").filter((v) => v.startsWith("option:router") || v.startsWith("3,"))).toEqual(["option:router"]);
    expect(dhcpOptions(c).get("option:mtu")).toBe("1500");
  });

  it("without DHCP: no range, no DHCP option, no lease file; the hosts file gives names to static addresses", () => {
    const { dhcp: _none, ...dnsOnly } = spec;
    const c = dnsmasqConf(dnsOnly, files, "fixture", account);
    for (const key of ["dhcp-range", "dhcp-option", "dhcp-leasefile", "dhcp-hostsfile", "dhcp-authoritative"]) expect(values(c, key), key).toEqual([]);
    expect(values(c, "addn-hosts")).toEqual([files.hosts]);
    expect(values(c, "listen-address")).toEqual(["10.81.0.1"]);
    expect(dnsmasqHosts(dnsOnly)).toBe("10.81.0.11 vma1.secure.lab.test vma1\n");
  });

  it("caps the TTL it caches and hands out at maxTtl, and logs every query to the network's log file", () => {
    expect(values(conf, "max-ttl")).toEqual(["600"]);
    expect(values(conf, "max-cache-ttl")).toEqual(["600"]);
    expect(values(conf, "log-queries")).toEqual([""]);
    expect(values(conf, "log-facility")).toEqual(["/run/netfleet/dnsmasq/secure.log"]);
  });

  it("drops to Debian's dnsmasq account (primary group nogroup); nobody where it is missing; root only when neither exists", () => {
    expect(values(conf, "user")).toEqual(["dnsmasq"]);
    expect(values(conf, "group")).toEqual(["nogroup"]);
    const passwd = fixture("dnsmasq/debian-passwd.txt");
    const group = fixture("dnsmasq/debian-group.txt");
    expect(dnsmasqUser(passwd.replace(/^dnsmasq:.*\n/m, ""), group)).toEqual({ user: "nobody", group: "nogroup" });
    expect(dnsmasqUser(passwd.replace(/^(?:dnsmasq|nobody):.*\n/gm, ""), group)).toEqual({ user: "root", group: "root" });
  });

  it("keeps the lease file in the state dir (persistent), everything else in the run dir", () => {
    expect(values(conf, "dhcp-leasefile")).toEqual(["/var/lib/netfleet-agent/dnsmasq/secure.leases"]);
    expect(values(conf, "pid-file")).toEqual(["/run/netfleet/dnsmasq/secure.pid"]);
    expect(values(conf, "dhcp-hostsfile")).toEqual(["/run/netfleet/dnsmasq/secure.hosts"]);
    expect(new Toolbox({ runDir: "/tmp/x" }).stateDir).toBe("/tmp/x/state");
    expect(new Toolbox().stateDir).toBe("/var/lib/netfleet-agent");
  });

  it("open DNS: every name goes to the upstream; allowed names with a set still fill it", () => {
    const c = dnsmasqConf({ ...spec, dns: "open" }, files, "fixture", account);
    expect(values(c, "server")).toEqual(["203.0.113.53"]);
    expect(values(c, "nftset")).toEqual(["/mirror.inet.test/4#inet#netfleet#dns_9a2a437a32e5"]);
  });

  it("static leases and names go to the hosts file", () => {
    expect(dnsmasqHosts(spec)).toBe("52:54:00:81:0a:01,10.81.0.11,vma1\n52:54:00:81:0b:09,vmb9\n");
  });
});

describe("dnsmasq allowed names (exact and *.wildcard)", () => {
  const up = ["203.0.113.53"];
  it("an exact name is forwarded and its subdomains are NXDOMAIN; no default server, so anything else is REFUSED", () => {
    expect(allowedNameLines([{ name: "static.example.org", set: "s1" }], up, false)).toEqual([
      "server=/static.example.org/203.0.113.53",
      "server=/*.static.example.org/",
      "nftset=/static.example.org/4#inet#netfleet#s1",
    ]);
  });

  it("a wildcard forwards the subdomains only (the bare name matches nothing: REFUSED); its set is named by the base (nftset takes no *. pattern)", () => {
    expect(allowedNameLines([{ name: "*.wild.org", set: "s2" }], up, false)).toEqual(["server=/*.wild.org/203.0.113.53", "nftset=/wild.org/4#inet#netfleet#s2"]);
  });

  it("exact and wildcard of one name: the name and its subdomains, nothing refused", () => {
    expect(allowedNameLines([{ name: "both.org", set: "a" }, { name: "*.both.org", set: "b" }], up, false)).toEqual(["server=/both.org/203.0.113.53", "nftset=/both.org/4#inet#netfleet#a,4#inet#netfleet#b"]);
  });

  it("an exact name under an allowed wildcard keeps its subdomains open (the wildcard allows them) and fills the wildcard's set too", () => {
    expect(allowedNameLines([{ name: "*.example.org", set: "w" }, { name: "api.example.org", set: "e" }], up, false)).toEqual([
      "server=/api.example.org/203.0.113.53",
      "server=/*.example.org/203.0.113.53",
      "nftset=/api.example.org/4#inet#netfleet#e,4#inet#netfleet#w",
      "nftset=/example.org/4#inet#netfleet#w",
    ]);
  });

  it("every upstream gets each forwarded name; a name without a set adds no nftset line", () => {
    expect(allowedNameLines([{ name: "docs.inet.test" }], ["203.0.113.53", "203.0.113.54"], false)).toEqual([
      "server=/docs.inet.test/203.0.113.53",
      "server=/docs.inet.test/203.0.113.54",
      "server=/*.docs.inet.test/",
    ]);
  });
});

describe("dnsmasq plan", () => {
  // the secure network with one static VM and open DNS
  const spec: DnsmasqSpec = { ...SECURE, hosts: SECURE.hosts.slice(0, 1), dns: "open", allowNames: [] };
  const account = { user: "dnsmasq", group: "nogroup" };
  const files = dnsmasqFiles(ctx.tools.runDir, "secure", ctx.tools.stateDir);
  const conf = dnsmasqConf(spec, files, "fixture", account);
  const hosts = dnsmasqHosts(spec);
  const prepare = [
    ["install", "-d", "-m", "0755", "/var/lib/netfleet-agent/dnsmasq"],
    ["touch", files.log, files.leases],
    ["chown", "dnsmasq:root", files.log, files.leases],
    ["chmod", "0660", files.log, files.leases],
  ];
  const start = ["dnsmasq", `--conf-file=${files.conf}`];
  const argv = (obs: DnsmasqObservation, s = spec) => dnsmasq.plan(s, obs, ctx).commands.map((c) => c.argv);

  it("starts when not running: config and hosts written, the lease and log files made the service account's, then dnsmasq", () => {
    expect(argv({ account })).toEqual([["write", files.conf], ["write", files.hosts], ...prepare, start]);
  });

  it("already running with this config → no commands", () => {
    expect(dnsmasq.plan(spec, { conf, hosts, pid: 4242, account, leases: true }, ctx)).toEqual({ changes: {}, commands: [] });
  });

  it("crashed, its files as they should be (owner and mode read with stat): the restart is the start alone", () => {
    const owned = parseStat(`${files.log} dnsmasq:root 660\n${files.leases} dnsmasq:root 660\n`);
    expect(argv({ conf, hosts, account, leases: true, stateDir: true, owned })).toEqual([start]);
    // a lease file left as root's (an older agent) is given to the account again
    const rootLeases = { ...owned, [files.leases]: "root:root 644" };
    expect(argv({ conf, hosts, account, leases: true, stateDir: true, owned: rootLeases })).toEqual([["touch", files.leases], ["chown", "dnsmasq:root", files.leases], ["chmod", "0660", files.leases], start]);
  });

  it("a lease change is a SIGHUP, never a restart", () => {
    expect(argv({ conf, hosts: "", pid: 4242, account, leases: true })).toEqual([["write", files.hosts], ["kill", "-HUP", "4242"]]);
  });

  it("a config change restarts it: stop, wait for the old one to exit, prepare, start", () => {
    expect(argv({ conf: conf.replace("1h", "2h"), hosts, pid: 4242, account, leases: true })).toEqual([["write", files.conf], ["kill", "-TERM", "4242"], ["wait-exit", "4242"], ...prepare, start]);
  });

  it("a lease file in the run dir (before the move) moves to the state dir once, after the old dnsmasq stopped", () => {
    const old = conf.replace(files.leases, files.legacyLeases);
    const plan = dnsmasq.plan(spec, { conf: old, hosts, pid: 4242, account, legacyLeases: true }, ctx);
    expect(plan.commands.map((c) => c.argv)).toEqual([
      ["write", files.conf],
      ["kill", "-TERM", "4242"],
      ["wait-exit", "4242"],
      prepare[0],
      ["mv", "--no-clobber", "/run/netfleet/dnsmasq/secure.leases", "/var/lib/netfleet-agent/dnsmasq/secure.leases"],
      ...prepare.slice(1),
      start,
    ]);
    expect(plan.changes.leases).toEqual({ old: files.legacyLeases, new: files.leases });
    // both present: the state dir's is the one; the old copy goes
    expect(argv({ account, leases: true, legacyLeases: true })).toContainEqual(["remove", files.legacyLeases]);
    expect(argv({ account, leases: true, legacyLeases: true }).some((a) => a[0] === "mv")).toBe(false);
  });

  it("a network without DHCP has no lease file to prepare", () => {
    const { dhcp: _none, ...dnsOnly } = spec;
    expect(argv({ account }, dnsOnly)).toEqual([["write", files.conf], ["write", files.hosts], ["touch", files.log], ["chown", "dnsmasq:root", files.log], ["chmod", "0660", files.log], start]);
  });

  it("no service account on the host: it runs as root, and the plan says so", () => {
    const plan = dnsmasq.plan(spec, {}, ctx);
    expect(plan.comment).toMatch(/runs as root/);
    expect(plan.commands.some((c) => c.argv[0] === "chown")).toBe(false);
  });

  it("absent (netfleet plan): nothing of it on the host, no account read; the first apply writes both files and starts it as root", () => {
    const plan = dnsmasq.plan(spec, dnsmasq.absent(spec), ctx);
    expect(plan).toEqual(dnsmasq.plan(spec, {}, ctx));
    expect(plan.commands.map((c) => c.argv)).toEqual([["write", files.conf], ["write", files.hosts], ["install", "-d", "-m", "0755", "/var/lib/netfleet-agent/dnsmasq"], start]);
  });
});

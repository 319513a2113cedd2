import { describe, expect, it } from "vitest";
import type { DnsmasqSpec } from "@netfleet/shared";
import { dnsmasq, dnsmasqConf, dnsmasqFiles, dnsmasqHosts } from "./dnsmasq.ts";
import { fixture, fixtureContext as ctx } from "./fixtures.ts";

describe("dnsmasq", () => {
  const spec: DnsmasqSpec = {
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
  const files = dnsmasqFiles("/run/netfleet", "secure");
  const conf = dnsmasqConf(spec, files, "fixture");

  it("allowlist DNS: only allow-listed names go upstream, and their addresses join the nft set", () => {
    expect(conf).toContain("no-resolv\n");
    expect(conf).toContain("server=/mirror.inet.test/203.0.113.53\nnftset=/mirror.inet.test/4#inet#netfleet#dns_9a2a437a32e5\n");
    expect(conf).toContain("server=/docs.inet.test/203.0.113.53\n");
    expect(conf).not.toMatch(/^server=203/m);
    expect(dnsmasqConf({ ...spec, dns: "open" }, files, "fixture")).toMatch(/^server=203\.0\.113\.53$/m);
  });

  it("static leases and names go to the hosts file", () => {
    expect(dnsmasqHosts(spec)).toBe("52:54:00:81:0a:01,10.81.0.11,vma1\n52:54:00:81:0b:09,vmb9\n");
  });

  it("starts when not running", () => {
    const plan = dnsmasq.plan(spec, {}, ctx);
    expect(plan.commands.map((c) => c.argv)).toEqual([["write", files.conf], ["write", files.hosts], ["dnsmasq", `--conf-file=${files.conf}`]]);
  });

  it("already running with this config → no commands", () => {
    expect(dnsmasq.plan(spec, { conf, hosts: dnsmasqHosts(spec), pid: 4242 }, ctx)).toEqual({ changes: {}, commands: [] });
  });

  it("a lease change is a SIGHUP, never a restart", () => {
    const plan = dnsmasq.plan(spec, { conf, hosts: "", pid: 4242 }, ctx);
    expect(plan.commands.map((c) => c.argv)).toEqual([["write", files.hosts], ["kill", "-HUP", "4242"]]);
  });

  it("a config change restarts it: stop, wait for the old one to exit, start", () => {
    const plan = dnsmasq.plan(spec, { conf: conf.replace("1h", "2h"), hosts: dnsmasqHosts(spec), pid: 4242 }, ctx);
    expect(plan.commands.map((c) => c.argv)).toEqual([["write", files.conf], ["kill", "-TERM", "4242"], ["wait-exit", "4242"], ["dnsmasq", `--conf-file=${files.conf}`]]);
  });
});

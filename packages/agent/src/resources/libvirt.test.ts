import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { XMLParser } from "fast-xml-parser";
import { describe, expect, it } from "vitest";
import type { LibvirtNetworkSpec } from "@netfleet/shared";
import { reconcile } from "../engine.ts";
import { RecordingRunner } from "../exec/recording-runner.ts";
import { fixture, fixtureContext as ctx } from "./fixtures.ts";
import { Toolbox } from "../tools.ts";
import { libvirtNetwork, networkXml, networkXmlPath, parseNetInfo, parseNetList, parseNetworkXml } from "./libvirt.ts";

const spec: LibvirtNetworkSpec = {
  kind: "libvirt-network",
  name: "secure",
  bridge: "br-secure",
  portgroups: [
    { name: "default", default: true },
    { name: "isolated", default: false, profileId: "netfleet-isolated" },
  ],
};
const observed = (xml: string, info: string) => ({
  exists: true,
  state: { ...parseNetworkXml(fixture(`libvirt/${xml}`)), ...parseNetInfo(fixture(`libvirt/${info}`)) },
});
const virsh = (...args: string[]) => ["virsh", "-q", "-c", "qemu:///system", ...args];

describe("virsh output parsing (real libvirt 9.0 output)", () => {
  it("reads the network, its owner metadata and portgroups", () => {
    const s = parseNetworkXml(fixture("libvirt/secure-inactive.xml"));
    expect(s).toMatchObject({ name: "secure", owner: "fixture", forwardMode: "bridge", bridge: "br-secure", virtualport: "openvswitch" });
    expect(s.portgroups).toEqual(spec.portgroups);
    expect(parseNetworkXml(fixture("libvirt/legacy.xml")).owner).toBeUndefined();
  });

  it("reads net-info", () => {
    expect(parseNetInfo(fixture("libvirt/net-info-active.txt"))).toEqual({ active: true, autostart: true, persistent: true });
    expect(parseNetInfo(fixture("libvirt/net-info-inactive.txt")).active).toBe(false);
    expect(() => parseNetInfo("error: failed to get network\n")).toThrow(/virsh net-info/);
  });

  it("reads every network's state from one net-list --all, as net-info gives it per network", () => {
    const list = parseNetList(fixture("libvirt/net-list-all-mixed.txt"));
    expect([...list.keys()]).toEqual(["datain", "legacy", "scratch", "secure", "service"]);
    // captured at the same moment: persistent but stopped, transient and running, ours and running
    for (const name of ["legacy", "scratch", "secure"]) {
      expect(list.get(name), name).toEqual(parseNetInfo(fixture(`libvirt/net-info-${name}-mixed.txt`)));
    }
    expect(list.get("legacy")).toEqual({ active: false, autostart: false, persistent: true });
    expect(list.get("scratch")).toEqual({ active: true, autostart: false, persistent: false });
    expect(parseNetList(fixture("libvirt/net-list-all-lab.txt")).get("secure")).toEqual({ active: true, autostart: true, persistent: true });
    expect(parseNetList("\n").size).toBe(0);
    expect(() => parseNetList("error: failed to connect to the hypervisor\n")).toThrow(/virsh net-list --all/);
  });
});

describe("libvirt-network plan", () => {
  it("writes the XML into the run dir, defines from that file, autostarts and starts a missing network", () => {
    const plan = libvirtNetwork.plan(spec, { exists: false }, ctx);
    expect(plan.changes).toEqual({ present: { old: false, new: true } });
    expect(plan.commands.map((c) => c.argv)).toEqual([
      ["write", "/run/netfleet/libvirt/secure.xml"],
      virsh("net-define", "/run/netfleet/libvirt/secure.xml"),
      virsh("net-autostart", "secure"),
      virsh("net-start", "secure"),
    ]);
    expect(plan.commands[0]!.builtin).toEqual({ op: "write-file", path: "/run/netfleet/libvirt/secure.xml", content: networkXml(spec, "fixture") });
    // virsh reads the file itself: nothing is fed on stdin (under execa stdin is a socket, not a file).
    expect(plan.commands.every((c) => c.stdin === undefined && !c.argv.includes("/dev/stdin"))).toBe(true);
    expect(plan.commands.every((c) => c.mutating)).toBe(true);
  });

  it("absent (netfleet plan): the first apply defines, autostarts and starts it", () => {
    expect(libvirtNetwork.plan(spec, libvirtNetwork.absent(spec), ctx)).toEqual(libvirtNetwork.plan(spec, { exists: false }, ctx));
  });

  it("the XML is the document the earlier hand-joined text was (parsed equal: only quoting and indentation differ)", () => {
    const joined = [
      "<network>",
      "  <name>secure</name>",
      "  <uuid>0b1f</uuid>",
      `  <metadata><nf:owner xmlns:nf="https://netfleet.dev/xmlns/owner/1">fixture</nf:owner></metadata>`,
      "  <forward mode='bridge'/>",
      "  <bridge name='br-secure'/>",
      "  <virtualport type='openvswitch'/>",
      "  <portgroup name='default' default='yes'/>",
      "  <portgroup name='isolated'><virtualport type='openvswitch'><parameters profileid='netfleet-isolated'/></virtualport></portgroup>",
      "</network>",
    ].join("\n");
    const whole = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: "@" });
    expect(whole.parse(networkXml(spec, "fixture", "0b1f"))).toEqual(whole.parse(joined));
  });

  it("the XML escapes what it carries: an owner or name with markup characters reads back as it was", () => {
    const odd = { ...spec, name: `a&b<c'd"e`, bridge: `br-<x>&"'` };
    expect(parseNetworkXml(networkXml(odd, `site&<'">`, "0b1f"))).toEqual({ ...parseNetworkXml(networkXml(spec, "fixture")), name: odd.name, bridge: odd.bridge, owner: `site&<'">`, uuid: "0b1f" });
  });

  it("the definition file lives under the agent's --run-dir", () => {
    const lab = { owner: "fixture", tools: new Toolbox({ runDir: "/tmp/lab/hosta/run" }) };
    expect(networkXmlPath("/tmp/lab/hosta/run", "secure")).toBe("/tmp/lab/hosta/run/libvirt/secure.xml");
    const plan = libvirtNetwork.plan(spec, { exists: false }, lab);
    expect(plan.commands[0]!.builtin).toMatchObject({ op: "write-file", path: "/tmp/lab/hosta/run/libvirt/secure.xml" });
    expect(plan.commands[1]!.argv).toEqual(virsh("net-define", "/tmp/lab/hosta/run/libvirt/secure.xml"));
  });

  it("the XML we define reads back as converged (round trip through the real dump)", () => {
    expect(libvirtNetwork.plan(spec, observed("secure-active.xml", "net-info-active.txt"), ctx)).toEqual({ changes: {}, commands: [] });
  });

  it("starts a stopped network", () => {
    const plan = libvirtNetwork.plan(spec, observed("secure-inactive.xml", "net-info-inactive.txt"), ctx);
    expect(plan.changes).toEqual({ active: { old: false, new: true } });
    expect(plan.commands.map((c) => c.argv)).toEqual([virsh("net-start", "secure")]);
  });

  it("redefines with the existing uuid and restarts when the definition changed", () => {
    const plan = libvirtNetwork.plan({ ...spec, bridge: "br-secure2" }, observed("secure-active.xml", "net-info-active.txt"), ctx);
    expect(plan.changes.bridge).toEqual({ old: "br-secure", new: "br-secure2" });
    expect(plan.commands.map((c) => c.argv)).toEqual([
      ["write", "/run/netfleet/libvirt/secure.xml"],
      virsh("net-define", "/run/netfleet/libvirt/secure.xml"),
      virsh("net-destroy", "secure"),
      virsh("net-start", "secure"),
    ]);
    const written = plan.commands[0]!.builtin;
    expect(parseNetworkXml(written?.op === "write-file" ? written.content : "")).toMatchObject({ uuid: "9f7de71a-bc09-43fb-bf8d-fcd7e7716f88", bridge: "br-secure2" });
  });

  it("refuses a network it did not create", () => {
    const legacy = { exists: true, state: { ...parseNetworkXml(fixture("libvirt/legacy.xml")), active: false, autostart: false, persistent: true } };
    const plan = libvirtNetwork.plan({ ...spec, name: "legacy", bridge: "br-legacy" }, legacy, ctx);
    expect(plan.commands).toEqual([]);
    expect(plan.blocked).toMatch(/libvirt network legacy exists and is not managed by netfleet/);
  });
});

describe("portgroups", () => {
  it("the isolated portgroup carries the profileid libvirt copies into the port's external_ids:port-profile", () => {
    expect(parseNetworkXml(networkXml(spec, "fixture")).portgroups[1]).toEqual({ name: "isolated", default: false, profileId: "netfleet-isolated" });
    expect(parseNetworkXml(fixture("libvirt/secure-inactive.xml")).portgroups[1]).toEqual({ name: "isolated", default: false, profileId: "netfleet-isolated" });
  });

  it("a definition of an earlier version with a vlan-<vid> portgroup (double-tagging) is redefined without it", () => {
    const old = { exists: true, state: { ...parseNetworkXml(fixture("libvirt/secure-vlan-portgroup.xml")), active: true, autostart: true, persistent: true } };
    expect(old.state.portgroups).toContainEqual({ name: "vlan-1081", default: false, vlan: 1081 });
    const plan = libvirtNetwork.plan(spec, old, ctx);
    expect(Object.keys(plan.changes)).toEqual(["portgroups"]);
    expect(plan.commands.map((c) => c.argv[4] ?? c.argv[0])).toEqual(["write", "net-define", "net-destroy", "net-start"]);
  });
});

describe("libvirt-network apply through the engine", () => {
  /** A libvirtd that knows `secure` once net-define has read a file holding our XML. */
  function libvirtHost(runDir: string) {
    const path = networkXmlPath(runDir, "secure");
    const seen: string[] = [];
    let defined = false;
    let active = false;
    const v = (...args: string[]) => new Toolbox({ runDir }).virsh(...args);
    const runner = new RecordingRunner()
      // the real rows of secure, stopped (legacy's row) or running; nothing before net-define
      .reply(v("net-list", "--all"), () => ({
        stdout: !defined ? "\n" : active ? fixture("libvirt/net-list-all-lab.txt").split("\n").filter((l) => /^ secure /.test(l)).join("\n") + "\n" : " secure    inactive   no    yes\n",
      }))
      .reply(v("net-dumpxml", "--inactive", "secure"), () => ({ stdout: fixture("libvirt/secure-inactive.xml") }))
      .reply(v("net-define", path), () => {
        // virsh opens the file itself: it must be complete when virsh runs.
        seen.push(readFileSync(path, "utf8"));
        defined = true;
        return { stdout: `Network secure defined from ${path}\n` };
      })
      .reply(v("net-autostart", "secure"), () => ({ stdout: "Network secure marked as autostarted\n" }))
      .reply(v("net-start", "secure"), () => {
        active = true;
        return { stdout: "Network secure started\n" };
      });
    return { runner, seen, path };
  }

  it("check mode writes nothing; apply writes the file, virsh defines from it; a second apply runs nothing", async () => {
    const runDir = mkdtempSync(join(tmpdir(), "nf-libvirt-"));
    try {
      const host = libvirtHost(runDir);
      const opts = { runner: host.runner, tools: new Toolbox({ runDir }), owner: "fixture" };
      const [checked] = await reconcile([spec], { ...opts, check: true });
      expect(checked).toMatchObject({ result: null, changed: false });
      expect(existsSync(host.path)).toBe(false);
      expect(host.runner.mutatingCalls).toEqual([]);

      const [first] = await reconcile([spec], opts);
      expect(first, first?.error).toMatchObject({ result: true, changed: true });
      expect(host.seen).toEqual([networkXml(spec, "fixture")]);
      expect(host.runner.mutatingCalls.map((c) => c.argv[4])).toEqual(["net-define", "net-autostart", "net-start"]);

      const before = host.runner.calls.length;
      const [second] = await reconcile([spec], opts);
      expect(second).toMatchObject({ result: true, changed: false, commands: [] });
      expect(host.runner.calls.slice(before).filter((c) => c.mutating)).toEqual([]);
      // a converged network costs two reads: net-list --all and its XML
      expect(host.runner.calls.slice(before).map((c) => c.argv[4])).toEqual(["net-list", "net-dumpxml"]);
    } finally {
      rmSync(runDir, { recursive: true, force: true });
    }
  });
});

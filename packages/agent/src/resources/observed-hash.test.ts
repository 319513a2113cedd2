import { describe, expect, it } from "vitest";
import { NftTableSpec, type ResourceSpec, type VmPortPolicySpec } from "@netfleet/shared";
import { reconcilePass } from "../engine.ts";
import { RecordingRunner } from "../exec/recording-runner.ts";
import { Toolbox } from "../tools.ts";
import { dnsmasq } from "./dnsmasq.ts";
import { fixture } from "./fixtures.ts";
import { parseLinks } from "./ip-json.ts";
import { observedHash } from "./observed-hash.ts";
import { ovsObserveArgv, parseOvsState } from "./ovsdb.ts";
import { prune } from "./prune.ts";
import { qosObserveArgv } from "./vm-bandwidth-qos.ts";
import { vmPortPolicy } from "./vm-port-policy.ts";

const tools = new Toolbox();
const nftSpec: ResourceSpec = NftTableSpec.parse(JSON.parse(fixture("nft/gateway-spec.json")));
const wan = fixture("nft/gateway-wan0-addr.json");

/** A gateway whose table `inet netfleet` is listed as the capture `gateway-<name>` (nft 1.0.6). */
function gateway(name: string): RecordingRunner {
  return new RecordingRunner()
    .reply(["nft", "-t", "list", "table", "inet", "netfleet"], { stdout: fixture(`nft/gateway-${name}.nft`) })
    .reply(["nft", "-j", "list", "ruleset"], { stdout: fixture(`nft/gateway-${name}.json`) })
    .reply(["ip", "-j", "addr", "show", "dev", "wan0"], { stdout: wan })
    .reply(["ip", "-j", "addr", "show", "dev", "wan1"], { stdout: "[]" });
}

const pass = (runner: RecordingRunner, more: { check?: boolean; expectObserved?: string } = {}) =>
  reconcilePass([nftSpec], { runner, tools, owner: "fixture", check: true, ...more });

describe("the observed-state hash of a pass", () => {
  it("is sha256 hex, the same pass after pass on an unchanged host, and the same in check mode and apply", async () => {
    const a = await pass(gateway("applied"));
    expect(a.observed).toMatch(/^[0-9a-f]{64}$/);
    expect((await pass(gateway("applied"))).observed).toBe(a.observed);
    const apply = await pass(gateway("applied"), { check: false });
    // (wan0's second subnet, 198.18.0.0/15, is not in the captured table: the apply replaces it)
    expect(a.results.map((r) => r.result)).toEqual([null]);
    expect(apply.results.map((r) => r.changed)).toEqual([true]);
    expect(apply.observed).toBe(a.observed);
  });

  it("ignores what moves on its own: a name-set element dnsmasq added (with its expiry)", async () => {
    expect((await pass(gateway("dynamic"))).observed).toBe((await pass(gateway("applied"))).observed);
  });

  it.each(["inserted", "policy", "extra-element", "flushed"])("changes when the table was edited by hand (%s)", async (name) => {
    expect((await pass(gateway(name))).observed).not.toBe((await pass(gateway("applied"))).observed);
  });

  it("ignores OpenFlow counters: the same rules dumped with and without stats (OVS 3.1)", async () => {
    const spec: VmPortPolicySpec = {
      kind: "vm-port-policy",
      name: "br-secure",
      network: "secure",
      uplinkPort: "bond0.1081",
      gateway: { ip: "10.81.0.1", mac: "02:4e:46:00:04:39" },
      isolatedDefault: false,
      cookie: "0x4e46000000000001",
      vms: [],
    };
    const host = (flows: string) =>
      new RecordingRunner()
        .reply(ovsObserveArgv({ owner: "fixture", tools }), { stdout: fixture("ovs/with-domain.json") })
        .reply(tools.ovsOfctl("dump-flows", "br-secure", "--no-stats"), { stdout: fixture(flows) })
        .reply(tools.ovsOfctl("dump-meters", "br-secure"), { stdout: fixture("ovs/bandwidth/meters-none.txt") })
        .reply(qosObserveArgv({ owner: "fixture", tools }), { stdout: fixture("ovs/bandwidth/qos-none.json") });
    const run = (flows: string) => reconcilePass([spec], { runner: host(flows), tools, owner: "fixture", check: true });
    expect((await run("ovs/flows-br-secure-stats.txt")).observed).toBe((await run("ovs/flows-br-secure.txt")).observed);
    expect((await run("ovs/flows-foreign-cookie.txt")).observed).not.toBe((await run("ovs/flows-br-secure.txt")).observed);
  });

  it("ignores a lease's expiry and dnsmasq's pid, not which addresses are leased or whether dnsmasq runs", () => {
    const hashOf = (spec: ResourceSpec, v: unknown) => observedHash([spec], [{ status: "fulfilled", value: v }]);
    const policy: ResourceSpec = { kind: "vm-port-policy", name: "br-secure", network: "secure", uplinkPort: "bond0.1081", gateway: { ip: "10.81.0.1", mac: "02:4e:46:00:04:39" }, isolatedDefault: false, cookie: "0x1", vms: [] };
    const lease = (expires: number, ip = "10.81.0.50") => ({ bridgeExists: true, vmPorts: [], flows: [], leases: [{ mac: "52:54:00:aa:00:05", ip, expires }] });
    expect(hashOf(policy, lease(100))).toBe(hashOf(policy, lease(4000)));
    expect(hashOf(policy, lease(100))).not.toBe(hashOf(policy, lease(100, "10.81.0.51")));
    const dns = { kind: "dnsmasq", name: "secure" } as ResourceSpec;
    expect(hashOf(dns, { conf: "x", pid: 4242 })).toBe(hashOf(dns, { conf: "x", pid: 5151 }));
    expect(hashOf(dns, { conf: "x", pid: 4242 })).not.toBe(hashOf(dns, { conf: "x" }));
    void vmPortPolicy;
    void dnsmasq;
  });

  it("links and OVS rows a resource does not name do not count: a VM's tap, another link; its own do", () => {
    const links = parseLinks(fixture("ip/vmhost-converged-link.json"));
    const tap = (over: Record<string, unknown> = {}) => new Map([...links, ["vnet7", { name: "vnet7", mtu: 1500, up: true, ...over }]]);
    const bond = { kind: "kernel-bond", name: "bond0", mode: "802.3ad", members: [...links.keys()].filter((n) => links.get(n)!.master === "bond0"), miimon: 100, mtu: 9000 } as ResourceSpec;
    const vlan = { kind: "vlan-interface", name: "bond0.1081", parent: "bond0", vlan: 1081, mtu: 9000 } as ResourceSpec;
    const addr = { kind: "interface-address", name: "bond0.1081", addresses: ["10.81.0.2/24"] } as ResourceSpec;
    for (const spec of [bond, vlan]) {
      expect(hashOf2(spec, { links: tap() })).toBe(hashOf2(spec, { links }));
      const first = [...links.keys()].find((n) => n === spec.name)!;
      expect(hashOf2(spec, { links: new Map([...links, [first, { ...links.get(first)!, mtu: 1400 }]]) })).not.toBe(hashOf2(spec, { links }));
    }
    const addresses = new Map([["bond0.1081", ["10.81.0.2/24"]], ["eth9", ["192.0.2.1/24"]]]);
    expect(hashOf2(addr, { links: tap(), addresses: new Map([...addresses, ["vnet7", ["192.0.2.9/24"]]]) })).toBe(hashOf2(addr, { links, addresses }));
    expect(hashOf2(addr, { links, addresses: new Map([...addresses, ["bond0.1081", []]]) })).not.toBe(hashOf2(addr, { links, addresses }));
    // A libvirt-style VM tap on our bridge (kernel-converged.json: vnet0 on br-secure) is not the bridge's: the same
    // capture without it hashes the same; kernel-drift.json (bond0.1081 gone, bond0.1099 ours) does not.
    const br = { kind: "ovs-bridge", name: "br-secure", datapath: "system", ports: [{ name: "bond0.1081", type: "system" }] } as ResourceSpec;
    const converged = parseOvsState(fixture("ovs/kernel-converged.json"));
    const vnet = converged.ports.get("vnet0")!;
    const withoutTap = {
      bridges: new Map([...converged.bridges].map(([k, b]) => [k, { ...b, portUuids: b.portUuids.filter((u) => u !== vnet.uuid) }])),
      ports: new Map([...converged.ports].filter(([k]) => k !== "vnet0")),
      interfaces: new Map([...converged.interfaces].filter(([k]) => k !== "vnet0")),
    };
    expect(hashOf2(br, withoutTap)).toBe(hashOf2(br, converged));
    expect(hashOf2(br, parseOvsState(fixture("ovs/kernel-drift.json")))).not.toBe(hashOf2(br, converged));
  });
});

const hashOf2 = (spec: ResourceSpec, v: unknown) => observedHash([spec], [{ status: "fulfilled", value: v }]);

describe("prune's part of the hash: only what carries an owner mark", () => {
  const spec: ResourceSpec = { kind: "prune", name: "host", keep: { links: [], ovsBridges: [], libvirtNetworks: [], dnsmasq: [], nftTable: false } };
  const hash = (o: Parameters<typeof prune.plan>[1]) => observedHash([spec], [{ status: "fulfilled", value: o }]);
  const links = parseLinks(fixture("ip/vmhost-converged-link.json"));
  const ovs = parseOvsState(fixture("ovs/kernel-converged.json"));
  const base = { links, ovs, libvirt: [] };
  const withLink = (name: string, alias?: string) => ({ ...base, links: new Map([...links, [name, { name, mtu: 1500, up: true, ...(alias ? { alias } : {}) }]]) });

  it("a VM's tap (no mark) coming, or a dnsmasq restarted with a new pid, leaves it; a marked link or bridge changes it", () => {
    expect(hash(withLink("vnet7"))).toBe(hash(base));
    const dnsmasq = (pid: number) => ({ ...base, dnsmasq: [{ network: "old", pid, files: ["/run/netfleet/dnsmasq/old.conf"] }] });
    expect(hash(dnsmasq(100))).toBe(hash(dnsmasq(200)));
    expect(hash(withLink("bond9", "netfleet-owner=fixture"))).not.toBe(hash(base));
    expect(hash({ ...base, ovs: parseOvsState(fixture("ovs/kernel-drift.json")) })).not.toBe(hash(base));
  });
});

describe("expectObserved: a plan runs only on the host it was made against", () => {
  it("a host that changed since the plan: nothing runs, one failed result says so with both hashes", async () => {
    const planned = (await pass(gateway("applied"))).observed;
    const runner = gateway("inserted");
    const seen: string[] = [];
    const out = await reconcilePass([nftSpec], { runner, tools, owner: "fixture", expectObserved: planned, onObserved: (h) => seen.push(h) });
    expect(runner.mutatingCalls).toEqual([]);
    expect(out.results).toHaveLength(1);
    expect(out.results[0]).toMatchObject({ id: "plan", result: false, changed: false });
    expect(out.results[0]!.comment).toContain(`host changed since the plan (observed ${out.observed}, plan made against ${planned})`);
    expect(seen).toEqual([out.observed]);
  });

  it("the host the plan was made against: the pass runs (here it replaces the edited table)", async () => {
    const edited = gateway("inserted");
    const planned = (await pass(edited)).observed;
    const out = await reconcilePass([nftSpec], { runner: gateway("inserted"), tools, owner: "fixture", expectObserved: planned });
    expect(out.results[0]!.id).toBe("nft-table[netfleet]");
    expect(out.results[0]!.changed).toBe(true);
  });
});

import { describe, expect, it } from "vitest";
import type { NftTableSpec } from "@netfleet/shared";
import { fixture, fixtureContext as ctx } from "./fixtures.ts";
import { desiredElements, nftRuleset, nftTable, parseNftTable } from "./nft.ts";

const nftSpec: NftTableSpec = {
  kind: "nft-table",
  name: "netfleet",
  externalInterfaces: ["wan0"],
  networks: [
    { name: "secure", interface: "gw-secure", cidr: "10.81.0.0/24", gateway: "10.81.0.1", egress: "allowlist", deny: [], services: [] },
    { name: "service", interface: "gw-service", cidr: "10.82.0.0/24", gateway: "10.82.0.1", egress: "open", deny: [], services: [] },
    { name: "datain", interface: "gw-datain", cidr: "10.83.0.0/24", gateway: "10.83.0.1", egress: "open", deny: [], services: [] },
  ],
  allow: [
    { vm: "10.81.0.11", to: "203.0.113.10", proto: "tcp" },
    { vm: "10.81.0.21", set: "dns_9a2a437a32e5", proto: "tcp", ports: [80] },
    { vm: "10.81.0.13", to: "203.0.113.20", proto: "tcp", ports: [80] },
  ],
  dnsSets: ["dns_9a2a437a32e5"],
  dnsSetTimeout: 3600,
  forwards: [{ listen: 2222, proto: "tcp", vm: "10.82.0.12", port: 22, interface: "gw-service", count: 1, from: [] }],
};

describe("nft-table", () => {
  // Captured from nft 1.0.6 after applying exactly nftSpec (the lab backend plus one allow entry).
  const live = parseNftTable(fixture("nft/lab-backend-modified.json"));

  it("reads the structure mark and the allow-set elements from real nft JSON", () => {
    expect(live.structure).toBe(nftRuleset(nftSpec).hash);
    expect(live.elements.allow_tcp).toEqual(["10.81.0.13 . 203.0.113.20 . 80"]);
    expect(live.elements.allow_all_tcp).toEqual(["10.81.0.11 . 203.0.113.10"]);
  });

  it("already converged → no commands", () => {
    expect(nftTable.plan(nftSpec, live, ctx)).toEqual({ changes: {}, commands: [] });
  });

  it("creates the whole table in one atomic nft -f, replacing only our own table", () => {
    const plan = nftTable.plan(nftSpec, { exists: false, elements: { allow_tcp: [], allow_udp: [], allow_all_tcp: [], allow_all_udp: [] } }, ctx);
    expect(plan.commands.map((c) => c.argv)).toEqual([["nft", "-f", "-"]]);
    const text = plan.commands[0]!.stdin!;
    expect(text.startsWith("table inet netfleet {}\ndelete table inet netfleet\ntable inet netfleet {\n")).toBe(true);
    expect(text).toContain("type filter hook forward priority filter; policy drop;");
    expect(text).toContain('oifname "wan0" ip saddr { 10.81.0.0/24, 10.82.0.0/24, 10.83.0.0/24 } masquerade');
    expect(text).toContain('iifname "wan0" tcp dport 2222 dnat ip to 10.82.0.12:22');
    expect(text).toContain('iifname "gw-secure" oifname "wan0" ip saddr 10.81.0.21 ip daddr @dns_9a2a437a32e5 tcp dport { 80 } accept');
    expect(text).not.toMatch(/table (ip|inet) (?!netfleet)/);
  });

  it("only the allow lists changed → edits the sets in place, rules untouched", () => {
    const spec = { ...nftSpec, allow: nftSpec.allow.filter((a) => a.vm !== "10.81.0.13").concat({ vm: "10.81.0.13", to: "198.51.100.0/28", proto: "udp", ports: [53] }) };
    const plan = nftTable.plan(spec, live, ctx);
    expect(plan.commands[0]!.stdin).toBe(
      "delete element inet netfleet allow_tcp { 10.81.0.13 . 203.0.113.20 . 80 }\nadd element inet netfleet allow_udp { 10.81.0.13 . 198.51.100.0/28 . 53 }\n",
    );
  });

  it("a new port-forward changes the structure → whole table replaced", () => {
    const spec = { ...nftSpec, forwards: [...nftSpec.forwards, { listen: 2223, proto: "tcp" as const, vm: "10.83.0.5", port: 22, interface: "gw-datain", count: 1, from: [] }] };
    expect(Object.keys(nftTable.plan(spec, live, ctx).changes)).toEqual(["structure"]);
  });

  it("groups elements per set, ports expanded, /32 shown bare as nft prints them", () => {
    expect(desiredElements({ ...nftSpec, allow: [{ vm: "10.81.0.11", to: "203.0.113.7/32", proto: "udp", ports: [53, 123] }] }).allow_udp).toEqual([
      "10.81.0.11 . 203.0.113.7 . 123",
      "10.81.0.11 . 203.0.113.7 . 53",
    ]);
  });
});

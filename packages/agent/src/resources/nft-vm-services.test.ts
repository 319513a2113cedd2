import { describe, expect, it } from "vitest";
import { NftTableSpec } from "@netfleet/shared";
import { fixture, fixtureContext as ctx } from "./fixtures.ts";
import { nftStructure, nftTable, normaliseListing, parseNftTable, type NftObservation } from "./nft.ts";

/**
 * Per-VM gateway services (a profile's gateway_services): fixtures from
 * capture-vm-services.sh, the generated table applied with nft 1.0.6 in a
 * scratch namespace and listed back.
 */
const spec = NftTableSpec.parse(JSON.parse(fixture("nft/gateway-vm-services-spec.json")));
const live = { externalSubnets: ["203.0.113.0/24"] };
const applied: NftObservation = {
  ...parseNftTable(fixture("nft/gateway-vm-services.json")),
  lines: normaliseListing(fixture("nft/gateway-vm-services.nft")),
  externalSubnets: live.externalSubnets,
  missingExternal: [],
  foreign: [],
};

function fromVms(s: NftTableSpec): string[] {
  const prefix = "chain from_vms: ";
  return normaliseListing(nftStructure(s, live).text).filter((l) => l.startsWith(prefix) && !l.endsWith(": {")).map((l) => l.slice(prefix.length));
}

describe("nft-table: one VM's own gateway services", () => {
  it("accepted from that VM's address only, after the network's services and before the final drop", () => {
    const lines = fromVms(spec);
    expect(lines.filter((l) => l.includes("saddr"))).toEqual([
      'iifname "gw-secure" ip daddr 10.81.0.1 ip saddr 10.81.0.11 tcp dport 9443 accept',
      'iifname "gw-secure" ip daddr 10.81.0.1 ip saddr 10.81.0.12 udp dport 7000-7010 accept',
    ]);
    // No rule opens 9443 or 7000-7010 to the network as a whole; everything else from the VMs still ends at the drop.
    expect(lines.filter((l) => /dport (9443|7000-7010) accept/.test(l) && !l.includes("saddr"))).toEqual([]);
    expect(lines.at(-1)).toBe("counter drop");
  });

  it("the table as nft 1.0.6 lists it after the apply plans nothing (the rule's printed form is the one generated)", () => {
    expect(applied.lines.filter((l) => l.includes("ip saddr 10.81.0.1"))).toHaveLength(2);
    expect(nftTable.plan(spec, applied, ctx)).toEqual({ changes: {}, commands: [] });
  });

  it("without vmServices the table is the one it was (no rule, same structure hash as the plain spec)", () => {
    const plain = NftTableSpec.parse(JSON.parse(fixture("nft/gateway-spec.json")));
    const stripped = { ...spec, networks: spec.networks.map(({ vmServices: _unused, ...n }) => n) };
    expect(nftStructure(stripped, live).hash).toBe(nftStructure(plain, live).hash);
    expect(fromVms(stripped).some((l) => l.includes("saddr"))).toBe(false);
  });
});

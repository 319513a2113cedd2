import { describe, expect, it } from "vitest";
import { ParseError, type PruneSpec } from "@netfleet/shared";
import { fixture, fixtureContext, noFiles } from "./fixtures.ts";
import type { Changes, ObserveContext } from "./types.ts";
import { observeStaleVxlanFilters, parseFilterTables, pruneVxlanFiltersCommands } from "./vxlan-interface-prune.ts";

// Real nft 1.0.6 output (__fixtures__/vxlan/README.md): filter tables of vx-secure and vx-gone with our mark,
// an empty inet netfleet-vx-foreign, an ip-family table of such a name, and the backend's inet netfleet.
const spec: PruneSpec = { kind: "prune", name: "host", keep: { links: ["vx-secure"], ovsBridges: [], libvirtNetworks: [], dnsmasq: [], nftTable: false } };

function host(listings: Record<string, string | undefined>): ObserveContext & { reads: string[] } {
  const reads: string[] = [];
  return {
    ...fixtureContext,
    ...noFiles,
    owner: "lab",
    reads,
    async read(argv) {
      reads.push(argv.join(" "));
      // (`list tables` output: the same table objects a ruleset holds, without their chains and rules)
      if (argv.join(" ") === "nft -j list ruleset") return { stdout: fixture("vxlan/nft-tables.json"), stderr: "", exitCode: 0 };
      const text = listings[argv[4]!];
      return text === undefined ? { stdout: "", stderr: fixture("vxlan/filter-missing.stderr"), exitCode: 1 } : { stdout: text, stderr: "", exitCode: 0 };
    },
  };
}

describe("prune of the vxlan devices' source filters", () => {
  it("lists the inet tables named netfleet-vx-*, by device", () => {
    expect(parseFilterTables(fixture("vxlan/nft-tables.json"))).toEqual([
      { table: "netfleet-vx-foreign", device: "vx-foreign" },
      { table: "netfleet-vx-gone", device: "vx-gone" },
      { table: "netfleet-vx-secure", device: "vx-secure" },
    ]);
    expect(() => parseFilterTables("nope")).toThrow(ParseError);
    // what the pass reads is the whole ruleset: the tables among chains, rules and sets (real nft 1.0.6, capture-gateway.sh)
    expect(parseFilterTables(fixture("nft/gateway-vxlan-ruleset.json"))).toEqual([{ table: "netfleet-vx-secure", device: "vx-secure" }]);
  });

  it("removes the table of a device not kept when it carries our mark; a kept device's and an unmarked one stay", async () => {
    const ours = fixture("vxlan/filter-table.nft");
    const ctx = host({ "netfleet-vx-gone": ours.replaceAll("vx-secure", "vx-gone"), "netfleet-vx-foreign": "table inet netfleet-vx-foreign {\n}\n", "netfleet-vx-secure": ours });
    const stale = await observeStaleVxlanFilters(spec, ctx);
    expect(stale).toEqual(["netfleet-vx-gone"]);
    expect(ctx.reads).toEqual(["nft -j list ruleset", "nft list table inet netfleet-vx-foreign", "nft list table inet netfleet-vx-gone"]);
    const changes: Changes = {};
    expect(pruneVxlanFiltersCommands(stale, changes).map((c) => c.argv.join(" "))).toEqual(["nft delete table inet netfleet-vx-gone"]);
    expect(changes).toEqual({ "nft-table inet netfleet-vx-gone": { old: "present", new: null } });
    expect(await observeStaleVxlanFilters(spec, { ...ctx, owner: "elsewhere" })).toEqual([]);
  });
});

import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadInventory } from "@netfleet/shared";
import { compileSite } from "./compile.ts";

const SITE = join(import.meta.dirname, "..", "..", "..", "shared", "src", "inventory", "__fixtures__", "profiles");

describe("compile: a VM's own gateway services (from its profile)", () => {
  it("go to the backend's nft-table as vmServices of its network, by VM address; a network without any has none", () => {
    const backend = compileSite(loadInventory(SITE)).find((a) => a.role === "backend")!;
    const nft = backend.resources.find((r) => r.kind === "nft-table");
    if (nft?.kind !== "nft-table") throw new Error("no nft-table");
    const web = nft.networks.find((n) => n.name === "web")!;
    expect(web.services).toEqual([{ proto: "udp", ports: { first: 123, last: 123 } }]);
    expect(web.vmServices).toEqual([
      { vm: "10.1.0.11", proto: "tcp", ports: { first: 8080, last: 8080 } },
      { vm: "10.1.0.12", proto: "tcp", ports: { first: 8080, last: 8080 } },
    ]);
    expect(nft.networks.find((n) => n.name === "batch")).not.toHaveProperty("vmServices");
  });
});

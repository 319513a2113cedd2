import { describe, expect, it } from "vitest";
import type { OwnedCleanupSpec } from "@netfleet/shared";
import { ownedCleanup } from "./cleanup.ts";
import { fixture, fixtureContext as ctx } from "./fixtures.ts";
import { parseLinks } from "./ip-link.ts";
import { parseOvsState } from "./ovs.ts";
import { sysctl } from "./sysctl.ts";

const keep: OwnedCleanupSpec = {
  kind: "owned-cleanup",
  name: "host",
  keep: { links: ["bond0", "bond0.1081", "bond0.1082", "bond0.1083"], ovsBridges: ["br-secure", "br-service"], libvirtNetworks: ["secure"] },
};

describe("owned-cleanup plan", () => {
  it("removes only what carries our mark and is no longer wanted", () => {
    const plan = ownedCleanup.plan(
      keep,
      { links: parseLinks(fixture("ip/vmhost-drift-link.json")), ovs: parseOvsState(fixture("ovs/kernel-drift.json")), libvirt: [{ name: "old", active: true }] },
      ctx,
    );
    expect(plan.commands.map((c) => c.argv)).toEqual([
      ["virsh", "-q", "-c", "qemu:///system", "net-destroy", "old"],
      ["virsh", "-q", "-c", "qemu:///system", "net-undefine", "old"],
      ["ovs-vsctl", "--timeout=30", "--", "del-br", "br-old"],
      ["ip", "link", "del", "dev", "bond0.1099"],
    ]);
    // br-mgmt, eth9.50 and vnet0 are not ours: untouched.
    expect(JSON.stringify(plan.commands)).not.toMatch(/br-mgmt|eth9|vnet0/);
  });

  it("already converged → no commands", () => {
    const plan = ownedCleanup.plan(
      keep,
      { links: parseLinks(fixture("ip/vmhost-converged-link.json")), ovs: parseOvsState(fixture("ovs/kernel-converged.json")), libvirt: [] },
      ctx,
    );
    expect(plan).toEqual({ changes: {}, commands: [] });
  });
});

describe("sysctl plan", () => {
  const spec = { kind: "sysctl", name: "net.ipv4.ip_forward", value: "1" } as const;
  it("already converged → no commands", () => {
    expect(sysctl.plan(spec, { value: fixture("ip/ip_forward.txt").trim() }, ctx)).toEqual({ changes: {}, commands: [] });
  });
  it("turns forwarding on", () => {
    expect(sysctl.plan(spec, { value: "0" }, ctx).commands.map((c) => c.argv)).toEqual([["sysctl", "-w", "net.ipv4.ip_forward=1"]]);
  });
});

import { describe, expect, it } from "vitest";
import { VmPortPolicySpec } from "@netfleet/shared";
import { vmBandwidthField } from "./bandwidth.ts";

describe("compile: a VM's bandwidth on its vm-port-policy entry", () => {
  it("carries the model's limits (bit/s, bits) as they are; no field without limits", () => {
    const egress = { rate: 50_000_000, burst: 40_000_000 };
    expect(vmBandwidthField({ bandwidth: { egress } })).toEqual({ bandwidth: { egress } });
    expect(vmBandwidthField({ bandwidth: { ingress: egress, egress } })).toEqual({ bandwidth: { egress, ingress: egress } });
    expect(vmBandwidthField({})).toEqual({});
    expect(vmBandwidthField({ bandwidth: {} })).toEqual({});
  });

  it("the field is valid in the assignment schema; a rate of 0 or a fraction is not", () => {
    const spec = (bandwidth: unknown) => ({ kind: "vm-port-policy", name: "br-secure", network: "secure", uplinkPort: "bond0.1081", gateway: { ip: "10.81.0.1", mac: "02:4e:46:00:04:39" }, isolatedDefault: false, cookie: "0x4e46000000000001", vms: [{ name: "dom1", mac: "52:54:00:aa:00:05", isolated: false, bandwidth }] });
    expect(VmPortPolicySpec.safeParse(spec({ egress: { rate: 50_000_000, burst: 40_000_000 } })).success).toBe(true);
    expect(VmPortPolicySpec.safeParse(spec({ egress: { rate: 0, burst: 1 } })).success).toBe(false);
    expect(VmPortPolicySpec.safeParse(spec({ ingress: { rate: 1.5, burst: 1 } })).success).toBe(false);
    expect(VmPortPolicySpec.safeParse(spec({ both: {} })).success).toBe(false);
  });
});

import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { memoryOutput } from "../output.ts";
import { PLAN_MAX_WIDTH, planCommand } from "./plan.ts";

const reference = join(import.meta.dirname, "..", "..", "..", "..", "inventories", "reference");

describe("netfleet plan", () => {
  it("describes the gateway: deny list, services, audit group, range forward with its sources, MTU and default route per network", async () => {
    const out = memoryOutput(false);
    expect(await planCommand(reference, { host: "backend" }, out)).toBe(0);
    const text = out.stdout.join("\n");
    expect(text).toContain("secure: egress allowlist, deny 10.10.0.0/24 169.254.0.0/16 192.168.122.0/24 192.168.123.0/24; services tcp/443; audit nflog group 1081");
    expect(text).toContain("forward tcp 30002-62766 -> 192.168.128.2 (+32764 addresses):22 from 203.0.113.0/28");
    expect(text).toContain("forward tcp 8443 -> 192.168.122.2:443");
    expect(text).toMatch(/dnsmasq\[secure\] +DHCP 192\.168\.129\.1-192\.168\.255\.254 \(default route, mtu 9000\) and DNS \(allowlist, ttl cap 300s, 1 names\)/);
    // the range forward's 32765-element map is cut in the text (a line of ~1 MB otherwise); --json keeps it
    expect(text.split("\n").filter((l) => l.length > PLAN_MAX_WIDTH + 120)).toEqual([]);
    expect(text).toMatch(/\.\.\. \(\d+ more characters; netfleet plan --json has them\)/);
  });
});

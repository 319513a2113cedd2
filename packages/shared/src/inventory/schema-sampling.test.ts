import { describe, expect, it } from "vitest";
import { COLLECTOR_PATTERN, IPFIX_PORT, parseCollector, SFLOW_PORT, SflowSettings } from "./schema-sampling.ts";

const pattern = new RegExp(COLLECTOR_PATTERN, "u");

describe("collectors: a.b.c.d[:port]", () => {
  it("reads the address and the port, the protocol's registered port when none is given", () => {
    expect(parseCollector("10.99.0.250", SFLOW_PORT)).toEqual({ address: "10.99.0.250", port: 6343 });
    expect(parseCollector("10.99.0.250", IPFIX_PORT)).toEqual({ address: "10.99.0.250", port: 4739 });
    expect(parseCollector("192.0.2.9:9995", SFLOW_PORT)).toEqual({ address: "192.0.2.9", port: 9995 });
  });

  it("the JSON Schema pattern accepts exactly what the loader accepts (editors never flag what validate takes)", () => {
    const ports = ["", ":0", ":1", ":01", ":9", ":80", ":6343", ":9999", ":10000", ":65535", ":65536", ":99999", ":100000", ":", ":-1", ": 1"];
    const hosts = ["10.0.0.1", "0.0.0.0", "255.255.255.255", "256.0.0.1", "10.0.0", "10.0.0.01", "1.2.3.4.5", "a.b.c.d", "collector", "::1", "10.0.0.1 "];
    for (const h of hosts) {
      for (const p of ports) {
        const text = `${h}${p}`;
        expect(pattern.test(text), text).toBe(parseCollector(text, 1) !== undefined);
      }
    }
    for (let port = 0; port <= 70000; port += 7) {
      const text = `10.0.0.1:${port}`;
      expect(pattern.test(text), text).toBe(parseCollector(text, 1) !== undefined);
    }
  });

  it("the sFlow settings default to OVS's own defaults (ovs-vswitchd.conf.db(5): sampling 400, polling 30, header 128)", () => {
    expect(SflowSettings.parse({ collectors: ["10.0.0.9"] })).toEqual({ collectors: ["10.0.0.9"], sampling: 400, polling: 30, header: 128 });
    expect(SflowSettings.safeParse({ collectors: [] }).success).toBe(false);
    expect(SflowSettings.safeParse({ collectors: ["10.0.0.9"], polling: 0 }).success).toBe(false);
  });
});

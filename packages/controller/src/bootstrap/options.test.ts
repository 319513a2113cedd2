import { describe, expect, it } from "vitest";
import { bootstrapOptions } from "../commands/bootstrap.ts";

const token = "abcdefgh.0123456789abcdefXYZ";

describe("netfleet bootstrap options", () => {
  it("defaults: root, port 22, 8 at a time, ~/.ssh/known_hosts, the site's NATS", () => {
    const o = bootstrapOptions({ token });
    expect(o).toMatchObject({ token, user: "root", port: 22, concurrency: 8, acceptNew: false });
    expect(o.knownHosts).toMatch(/\.ssh\/known_hosts$/);
    expect(o.nats).toBeUndefined();
  });

  it("reads every flag", () => {
    const o = bootstrapOptions({ token, nats: "nats://10.0.0.1:4222, nats://10.0.0.2:4222", limit: "hv*,backend", acceptNew: true, concurrency: "3", identity: "/k", knownHosts: "/kh", user: "admin", port: "2222" });
    expect(o).toEqual({ token, nats: ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"], limit: ["hv*", "backend"], acceptNew: true, concurrency: 3, identity: "/k", knownHosts: "/kh", user: "admin", port: 2222 });
  });

  it("refuses what it cannot use, naming the flag", () => {
    expect(() => bootstrapOptions({})).toThrow(/--token is required/);
    expect(() => bootstrapOptions({ token: "nope" })).toThrow(/<id>\.<secret>/);
    expect(() => bootstrapOptions({ token, nats: "http://x:1" })).toThrow(/--nats/);
    expect(() => bootstrapOptions({ token, concurrency: "0" })).toThrow(/--concurrency/);
    expect(() => bootstrapOptions({ token, port: "70000" })).toThrow(/--port/);
    expect(() => bootstrapOptions({ token, user: "root; id" })).toThrow(/--user/);
  });
});

import { describe, expect, it } from "vitest";
import { bootstrapOptions } from "../commands/bootstrap.ts";

const tokenFile = "/run/secrets/join-token";

describe("netfleet bootstrap options", () => {
  it("defaults: root, port 22, 8 at a time, ~/.ssh/known_hosts, the site's NATS, host tokens of 24 h", () => {
    const o = bootstrapOptions({ tokenFile });
    expect(o).toMatchObject({ tokenFile, user: "root", port: 22, concurrency: 8, acceptNew: false });
    expect(o.knownHosts).toMatch(/\.ssh\/known_hosts$/);
    expect(o.nats).toBeUndefined();
  });

  it("reads every flag", () => {
    const o = bootstrapOptions({ tokenFile, nats: "nats://10.0.0.1:4222, nats://10.0.0.2:4222", limit: "hv*,backend", acceptNew: true, concurrency: "3", identity: "/k", knownHosts: "/kh", user: "admin", port: "2222" });
    expect(o).toEqual({ tokenFile, tokenTtlMs: 86_400_000, nats: ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"], limit: ["hv*", "backend"], acceptNew: true, concurrency: 3, identity: "/k", knownHosts: "/kh", user: "admin", port: 2222 });
  });

  it("refuses what it cannot use, naming the flag", () => {
    expect(bootstrapOptions({})).toMatchObject({ tokenTtlMs: 86_400_000 });
    expect(bootstrapOptions({}).tokenFile).toBeUndefined();
    expect(bootstrapOptions({ stateDir: "/s", tokenTtl: "7d", imageRoot: "/img", host: "hv1" })).toMatchObject({ stateDir: "/s", tokenTtlMs: 7 * 86_400_000, imageRoot: "/img", host: "hv1" });
    expect(() => bootstrapOptions({ tokenTtl: "31d" })).toThrow(/^--token-ttl takes a duration/);
    expect(() => bootstrapOptions({ tokenFile, tokenTtl: "1h" })).toThrow(/--token-ttl is for the host tokens/);
    expect(() => bootstrapOptions({ host: "hv1" })).toThrow(/--host is for --image-root/);
    expect(() => bootstrapOptions({ imageRoot: "/img", host: "Hv 1" })).toThrow(/--host takes/);
    expect(() => bootstrapOptions({ token: "abcdefgh.0123456789abcdefXYZ", tokenFile })).toThrow(/--token is refused: a token on the command line is shown by ps to every local user; .* --token-file FILE, or .* --token-file -$/);
    expect(() => bootstrapOptions({ tokenFile, nats: "http://x:1" })).toThrow(/--nats/);
    expect(() => bootstrapOptions({ tokenFile, concurrency: "0" })).toThrow(/--concurrency/);
    expect(() => bootstrapOptions({ tokenFile, port: "70000" })).toThrow(/--port/);
    expect(() => bootstrapOptions({ tokenFile, user: "root; id" })).toThrow(/--user/);
  });
});

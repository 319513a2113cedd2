import { describe, expect, it } from "vitest";
import type { Host } from "@netfleet/shared";
import { matchHost, tokenMatches } from "./match.ts";
import { renderAccounts, renderNodeConfig } from "../nats/config.ts";
import { agentUser } from "../nats/permissions.ts";

const host = (name: string, mac?: string) => ({ name, ...(mac ? { mac } : {}) }) as Host;
const facts = (hostname: string, ...macs: string[]) => ({ hostname, interfaces: macs.map((mac, i) => ({ name: `eth${i}`, mac, state: null, kind: null })) });

describe("enrollment matching", () => {
  const hosts = [host("hv1", "52:54:00:00:00:01"), host("hv2", "52:54:00:00:00:02")];
  it("matches by hostname, then by management MAC, and never guesses on a conflict", () => {
    expect(matchHost(facts("hv1"), hosts)).toEqual({ kind: "matched", host: "hv1", matchedBy: "hostname" });
    expect(matchHost(facts("debian", "52:54:00:00:00:02"), hosts)).toEqual({ kind: "matched", host: "hv2", matchedBy: "mac" });
    expect(matchHost(facts("hv1", "52:54:00:00:00:02"), hosts)).toMatchObject({ kind: "conflict" });
    expect(matchHost(facts("debian", "52:54:00:00:00:01", "52:54:00:00:00:02"), hosts)).toMatchObject({ kind: "conflict" });
    expect(matchHost(facts("debian"), hosts)).toEqual({ kind: "none" });
  });
  it("compares tokens", () => {
    expect(tokenMatches("a", "a")).toBe(true);
    expect(tokenMatches("a", "b")).toBe(false);
  });
});

describe("nats-server configuration", () => {
  it("writes users with permissions that name only the agent's own subjects", () => {
    const text = renderAccounts([agentUser("lab", "hv1", "p".repeat(20))]);
    expect(text).toContain('"$JS.API.DIRECT.GET.KV_nf_lab_desired.$KV.nf_lab_desired.hv1"');
    expect(text).toContain('"_nf_inbox.lab.hv1.>"');
    expect(text).not.toMatch(/CONSUMER|STREAM|_INBOX\.>/);
  });
  it("quotes every value", () => {
    const conf = renderNodeConfig({ name: 'x"y', host: "127.0.0.1", port: 1, monitorPort: 2, storeDir: "/s", pidFile: "/p", accountsFile: "../a.conf" });
    expect(conf).toContain('server_name: "x\\"y"');
    expect(conf).toContain('include "../a.conf"');
  });
  it("turns nats-server's Go profiler on only when a port is given (benchmarks), never by default", () => {
    const node = { name: "nf-1", host: "127.0.0.1", port: 1, monitorPort: 2, storeDir: "/s", pidFile: "/p", accountsFile: "../a.conf" };
    expect(renderNodeConfig(node)).not.toContain("prof_port");
    expect(renderNodeConfig({ ...node, profPort: 16543 })).toContain("\nprof_port: 16543\n");
  });
});

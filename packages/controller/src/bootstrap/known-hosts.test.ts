import { describe, expect, it } from "vitest";
import { blobKeyType, checkHostKey, entryMatches, fingerprint, formatKnownHost, hostKeyName, knownKeyTypes, parseKnownHosts } from "./known-hosts.ts";

// Two real ed25519 keys; the hashed lines were written by `ssh-keygen -H` (OpenSSH 9.2).
const K1 = "AAAAC3NzaC1lZDI1NTE5AAAAIOEnXeXPoC+bj/qs8N7/hB+CqUrl1MthLkuJ1p8QcRrm";
const K2 = "AAAAC3NzaC1lZDI1NTE5AAAAIDQ9g82Mm20zDTFGfJgfsNOuhcyNtq93p84K4Bh1Jowe";
const key1 = Buffer.from(K1, "base64");
const key2 = Buffer.from(K2, "base64");
const HASHED = [
  `|1|sHre4RugihtKoOKBF810oGqzicI=|d6hsDMKqcIJuzIre3xHtNZYQknc= ssh-ed25519 ${K1}`, // 10.97.0.11
  `|1|CNT6iHQJ+EUD1+r8uIBM9lOteeM=|hx89M82PW/WDBj8cLLBFO0QUhBA= ssh-ed25519 ${K2}`, // [10.97.0.12]:2222
].join("\n");

describe("known_hosts", () => {
  it("reads the key type from the wire blob and prints OpenSSH's fingerprint", () => {
    expect(blobKeyType(key1)).toBe("ssh-ed25519");
    expect(fingerprint(key1)).toBe("SHA256:6fxmhokbM8okRL//dT5seecUknK2/T63upAJL/F/Tfw");
  });

  it("matches hashed entries written by ssh-keygen -H, with [host]:port for other ports", () => {
    const { entries, problems } = parseKnownHosts(HASHED);
    expect(problems).toEqual([]);
    expect(entries.map((e) => e.line)).toEqual([1, 2]);
    expect(entryMatches(entries[0]!, "10.97.0.11")).toBe(true);
    expect(entryMatches(entries[0]!, "10.97.0.12")).toBe(false);
    expect(entryMatches(entries[1]!, hostKeyName("10.97.0.12", 2222))).toBe(true);
    expect(entryMatches(entries[1]!, hostKeyName("10.97.0.12", 22))).toBe(false);
    expect(checkHostKey(entries, ["10.97.0.11"], key1)).toEqual({ kind: "known", line: 1 });
    expect(checkHostKey(entries, ["[10.97.0.12]:2222"], key2)).toEqual({ kind: "known", line: 2 });
  });

  it("calls a different key of the same type for a known host a change, naming the recorded line and fingerprint", () => {
    const { entries } = parseKnownHosts(HASHED);
    expect(checkHostKey(entries, ["10.97.0.11"], key2)).toEqual({ kind: "changed", line: 1, keyType: "ssh-ed25519", knownFingerprint: fingerprint(key1) });
    expect(checkHostKey(entries, ["10.97.0.99"], key2)).toEqual({ kind: "unknown" });
  });

  it("plain patterns: lists, wildcards, negation, comments, markers", () => {
    const text = [
      "# a comment",
      "",
      `hv1,10.97.0.11 ssh-ed25519 ${K1} root@hv1`,
      `*.lab.test,!bad.lab.test ssh-ed25519 ${K2}`,
      `@revoked hv9 ssh-ed25519 ${K1}`,
      `@cert-authority *.lab.test ssh-ed25519 ${K1}`,
      "hv2 ssh-ed25519 AAAAnotakey",
      "@bogus hv3 ssh-ed25519 AAAA",
      "justahost",
    ].join("\n");
    const { entries, problems } = parseKnownHosts(text);
    expect(problems.map((p) => p.line)).toEqual([7, 8, 9]);
    expect(entries).toHaveLength(4);
    expect(checkHostKey(entries, ["hv1"], key1)).toEqual({ kind: "known", line: 3 });
    expect(checkHostKey(entries, ["HV1"], key1)).toEqual({ kind: "known", line: 3 });
    expect(checkHostKey(entries, ["a.lab.test"], key2)).toEqual({ kind: "known", line: 4 });
    // The CA line is no host key: a.lab.test offering K1 is a changed key, not a known one.
    expect(checkHostKey(entries, ["a.lab.test"], key1).kind).toBe("changed");
    expect(checkHostKey(entries, ["bad.lab.test"], key2)).toEqual({ kind: "unknown" });
    expect(checkHostKey(entries, ["hv9"], key1)).toEqual({ kind: "revoked", line: 5 });
    // Either name (address or inventory name) may be the one recorded.
    expect(checkHostKey(entries, ["10.97.0.50", "hv1"], key1)).toEqual({ kind: "known", line: 3 });
    expect(knownKeyTypes(entries, ["hv1"])).toEqual(["ssh-ed25519"]);
  });

  it("writes hashed lines that it (and OpenSSH's format) reads back", () => {
    const line = formatKnownHost("[10.97.0.11]:2200", key1, Buffer.alloc(20, 7));
    expect(line).toMatch(/^\|1\|[A-Za-z0-9+/]{27}=\|[A-Za-z0-9+/]{27}= ssh-ed25519 AAAAC3/);
    const { entries } = parseKnownHosts(line + "\n");
    expect(checkHostKey(entries, ["[10.97.0.11]:2200"], key1)).toEqual({ kind: "known", line: 1 });
    expect(checkHostKey(entries, ["10.97.0.11"], key1)).toEqual({ kind: "unknown" });
  });
});

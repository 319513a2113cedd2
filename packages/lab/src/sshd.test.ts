import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SSHD_MAX_LISTEN, sshdArgv, sshdConfig, writeSshdFiles } from "./sshd.ts";

const dir = mkdtempSync(join(tmpdir(), "nf-sshd-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("test sshd files", () => {
  it("listens on 1 to 16 sockets; 17 (sshd's MAX_LISTEN_SOCKS + 1, which made sshd exit) is refused with the count", () => {
    const listen = Array.from({ length: SSHD_MAX_LISTEN + 1 }, (_, i) => `10.0.0.1:${28001 + i}`);
    expect(() => sshdConfig(dir, listen)).toThrow(`sshd in ${dir}: 17 listen addresses asked; sshd takes 1 to 16 (MAX_LISTEN_SOCKS)`);
    expect(() => sshdConfig(dir, [])).toThrow(/0 listen addresses/);
    expect(sshdConfig(dir, listen.slice(0, 16)).match(/^ListenAddress /gm)).toHaveLength(16);
  });

  it("writes key, authorized_keys and config; keeps the host key and reports an unchanged config on a second write", () => {
    const a = writeSshdFiles(dir, ["10.0.0.1:22"], "ssh-ed25519 AAAAC3Nza client");
    expect(a.configChanged).toBe(true);
    expect(a.hostPub).toMatch(/^ssh-ed25519 \S+$/);
    expect(readFileSync(join(dir, "authorized_keys"), "utf8")).toBe("ssh-ed25519 AAAAC3Nza client\n");
    expect(readFileSync(a.files.config, "utf8")).toContain(`PidFile ${join(dir, "sshd.pid")}\n`);
    const b = writeSshdFiles(dir, ["10.0.0.1:22"], "ssh-ed25519 AAAAC3Nza client");
    expect(b).toEqual({ ...a, configChanged: false });
    expect(writeSshdFiles(dir, ["10.0.0.1:22"], "ssh-ed25519 AAAAC3Nza client", true).hostPub).not.toBe(a.hostPub);
    expect(sshdArgv(dir)).toEqual(["/usr/sbin/sshd", "-f", join(dir, "sshd_config"), "-E", join(dir, "sshd.log")]);
  });
});

import { describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkAgentConfig, readToken, renderConfig, runArgs, tokenFileWarning } from "./config.ts";

const token = "abcdefgh.0123456789abcdefXYZ";
const good = { site: "lab", nats: ["nats://10.0.0.1:4222", "tls://ctl.example:4443"], token };

describe("the agent config (agent.json)", () => {
  it("accepts a config and turns it into the argv of netfleet-agent run, without the token (handed over in memory)", () => {
    const c = checkAgentConfig({ ...good, name: "hv1", stateDir: "/var/lib/x", runDir: "/run/x" }, "/etc/netfleet/agent.json");
    expect(runArgs(c)).toEqual(["run", "--site", "lab", "--nats", "nats://10.0.0.1:4222,tls://ctl.example:4443", "--name", "hv1", "--state-dir", "/var/lib/x", "--run-dir", "/run/x"]);
    expect(runArgs(c).join(" ")).not.toContain("0123456789abcdef");
    expect(JSON.parse(renderConfig(c))).toEqual(c);
  });

  it("metrics and logLevel become run's --metrics and --log-level; bad values name the field", () => {
    const f = "/etc/netfleet/agent.json";
    expect(runArgs(checkAgentConfig({ ...good, metrics: "0.0.0.0:9471", logLevel: "debug" }, f))).toEqual(["run", "--site", "lab", "--nats", "nats://10.0.0.1:4222,tls://ctl.example:4443", "--metrics", "0.0.0.0:9471", "--log-level", "debug"]);
    expect(runArgs(checkAgentConfig({ ...good, metrics: "off" }, f))).toContain("off");
    expect(runArgs(checkAgentConfig({ ...good, metrics: "9480" }, f))).toEqual(expect.arrayContaining(["--metrics", "9480"]));
    expect(() => checkAgentConfig({ ...good, metrics: "everywhere" }, f)).toThrow(`${f}: metrics: off, PORT or ADDRESS:PORT (e.g. 127.0.0.1:9471)`);
    expect(() => checkAgentConfig({ ...good, metrics: 9471 }, f)).toThrow(`${f}: metrics: off, PORT or ADDRESS:PORT`);
    expect(() => checkAgentConfig({ ...good, logLevel: "verbose" }, f)).toThrow(`${f}: logLevel: one of fatal, error, warn, info, debug, trace, silent`);
  });

  it("refuses what it cannot use, naming the file and the field", () => {
    const f = "/etc/netfleet/agent.json";
    expect(() => checkAgentConfig([], f)).toThrow(`${f}: want a JSON object`);
    expect(() => checkAgentConfig({ ...good, extra: 1 }, f)).toThrow(`${f}: extra: unknown key`);
    expect(() => checkAgentConfig({ ...good, site: "Lab" }, f)).toThrow(`${f}: site: a DNS label`);
    expect(() => checkAgentConfig({ ...good, nats: [] }, f)).toThrow(`${f}: nats: a list of nats://host:port`);
    expect(() => checkAgentConfig({ ...good, nats: ["nats://a:99999"] }, f)).toThrow(`${f}: nats: a list of nats://host:port`);
    expect(() => checkAgentConfig({ ...good, token: "nope" }, f)).toThrow(/token: .*<id>\.<secret>/);
    expect(() => checkAgentConfig({ ...good, name: 5 }, f)).toThrow(`${f}: name: a DNS label`);
    expect(() => checkAgentConfig({ ...good, stateDir: "relative" }, f)).toThrow(`${f}: stateDir: an absolute path`);
  });

  it("readToken: a token file's text, trimmed; an empty or missing file says so; a file others can read gets a warning", async () => {
    const dir = mkdtempSync(join(tmpdir(), "secrets-token-"));
    try {
      writeFileSync(join(dir, "t"), `  ${token}\n`, { mode: 0o600 });
      writeFileSync(join(dir, "empty"), "\n");
      expect(await readToken(join(dir, "t"))).toBe(token);
      await expect(readToken(join(dir, "empty"))).rejects.toThrow("the file is empty; want the token");
      await expect(readToken(join(dir, "none"))).rejects.toThrow(/ENOENT/);
      expect(await tokenFileWarning(join(dir, "t"))).toBeUndefined();
      writeFileSync(join(dir, "open"), token, { mode: 0o644 });
      expect(await tokenFileWarning(join(dir, "open"))).toBe(`warning: ${join(dir, "open")} is readable by other users (mode 0644); keep a token file 0600 (chmod 600 ${join(dir, "open")})`);
      expect(await tokenFileWarning("-")).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

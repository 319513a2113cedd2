/**
 * `netfleet` on commander, in-process through main(argv, out): each command
 * takes only its own options (an unknown one is a usage error, 64, with a
 * suggestion when a known one is close), --help on every command and
 * --version exit 0, checks that commander cannot make end with 64 and the
 * command's name, and `completion bash|zsh` prints a script that parses and
 * names every command.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { main } from "../../packages/controller/src/main.ts";
import { memoryOutput } from "../../packages/controller/src/output.ts";

const SITE = join(import.meta.dirname, "..", "..", "inventories", "lab");
const COMMANDS = ["validate", "plan", "compile", "schema", "bootstrap", "serve", "token", "hosts", "status", "audit", "rollout", "keys", "show", "graph", "completion"];

async function run(...argv: string[]) {
  const out = memoryOutput(false);
  const code = await main(argv, out);
  return { code, stdout: out.stdout.join("\n"), stderr: out.stderr.join("\n") };
}

describe("netfleet options per command", () => {
  it.each([
    [["plan", SITE, "--batch", "20%"], "unknown option '--batch'"],
    [["validate", SITE, "--batch", "20%"], "unknown option '--batch'"],
    [["validate", SITE, "--state-dir", "/tmp/x"], "unknown option '--state-dir'"],
    [["schema", "--json"], "unknown option '--json'"],
    [["serve", SITE, "--json"], "unknown option '--json'"],
    [["token", "--nats", "nats://127.0.0.1:4222"], "unknown option '--nats'"],
    [["compile", SITE, "--host", "x", "--out", "/tmp/never"], "unknown option '--host'"],
    [["plan", SITE, "extra"], "too many arguments for 'plan'"],
    [["compile", SITE], "required option '--out <dir>' not specified"],
    [["hosts", "approve"], "missing required argument 'name'"],
  ])("%j is a usage error", async (argv, message) => {
    const r = await run(...argv);
    expect(r.code).toBe(64);
    expect(r.stderr).toContain(`netfleet: ${message}`);
    expect(r.stdout).toBe("");
  });

  it("suggests a close option or command", async () => {
    expect((await run("plan", SITE, "--hots", "kvm1")).stderr).toBe("netfleet: unknown option '--hots'\n(Did you mean --host?)");
    expect((await run("rollout", SITE, "--limt", "kvm1")).stderr).toContain("(Did you mean --limit?)");
    expect((await run("rollout", SITE, "--max-fails", "1")).stderr).toContain("(Did you mean --max-fail?)");
    expect((await run("valdate", SITE)).stderr).toContain("(Did you mean validate?)");
  });

  it.each([
    [["rollout", SITE, "--check", "--resume"], "netfleet rollout: --check and --resume do not go together"],
    [["rollout", SITE, "--resume", "--abandon"], "netfleet rollout: --resume and --abandon do not go together"],
    [["rollout", SITE, "--batch", "0"], "--batch must be at least 1"],
    [["rollout", SITE, "--parallel", "0"], "--parallel takes a whole number >= 1"],
    [["rollout", SITE, "--timeout", "soon"], "--timeout takes a number of seconds"],
    [["rollout", SITE, "--nats", "http://x:1"], "netfleet rollout: --nats"],
    [["serve", SITE, "--nodes", "2"], "netfleet serve: --nodes is 1 or 3"],
    [["serve", SITE, "--listen", "nowhere"], "netfleet serve: --listen takes ADDRESS:PORT"],
    [["status", "--nats", "nats://a b:1"], "netfleet status: --nats"],
    [["hosts", "approve", "h1", "--nats", "x"], "netfleet hosts approve: --nats"],
    [["audit", "vma1", "--since", "yesterday"], "netfleet audit: --since takes a duration"],
    [["bootstrap", SITE, "--token", "abcdefgh.0123456789abcdefXYZ"], "netfleet bootstrap: --token is refused: a token on the command line is shown by ps"],
  ])("%j: a value it cannot take is a usage error before anything runs", async (argv, message) => {
    const r = await run(...argv);
    expect(r.code).toBe(64);
    expect(r.stderr).toContain(message);
  });

  it("runs a command with its own options", async () => {
    expect(await run("validate", SITE)).toMatchObject({ code: 0, stdout: expect.stringContaining("valid — site lab") });
    const json = memoryOutput(true);
    expect(await main(["validate", SITE, "--json"], json)).toBe(0);
    expect(json.values).toMatchObject([{ valid: true, site: "lab" }]);
  });
});

describe("netfleet --help, --version", () => {
  it.each([...COMMANDS.map((c) => [c]), ["hosts", "approve"], ["hosts", "reject"]])("%s --help exits 0 with its usage", async (...words) => {
    const r = await run(...words, "--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Usage: netfleet ${words.join(" ")} `));
    expect(r.stderr).toBe("");
  });

  it("the program's help keeps the notes on servers and exit codes; help CMD is --help", async () => {
    const r = await run("--help");
    expect(r.code).toBe(0);
    for (const c of COMMANDS) expect(r.stdout).toMatch(new RegExp(`^  ${c} `, "m"));
    expect(r.stdout).toContain("Servers: commands connect to --nats URL[,URL...]");
    expect(r.stdout).toContain("Exit codes: 0 ok, 1 runtime error, 2 invalid input (nothing was changed), 64 usage error.");
    expect((await run("help", "rollout")).stdout).toBe((await run("rollout", "--help")).stdout);
    expect((await run("rollout", "--help")).stdout).toContain("Exit: 0 success, 3 partial");
  });

  it("no command: the help on stdout, 64 (as before commander)", async () => {
    const r = await run();
    expect(r.code).toBe(64);
    expect(r.stdout).toMatch(/^Usage: netfleet/);
  });

  it("help of an unknown command is that command's usage error, not the whole help", async () => {
    const r = await run("help", "nosuch");
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/^netfleet: unknown command 'nosuch'/);
    expect(r.stdout).toBe("");
    expect((await run("help", "rolout")).stderr).toContain("(Did you mean rollout?)");
  });

  it("the program's help names rollout's own exit codes; compile marks --out required", async () => {
    expect((await run("--help")).stdout).toContain("rollout also: 3 partial (some hosts failed), 4 refused (another rollout holds the lock).");
    expect((await run("compile", "--help")).stdout).toMatch(/--out <dir>\s+where the assignment files go \(required\)/);
  });

  it("compile refuses an --out that is a file with 2 and one line", async () => {
    const dir = mkdtempSync(join(tmpdir(), "netfleet-out-"));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, "a-file");
    writeFileSync(file, "");
    const r = await run("compile", SITE, "--out", file);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`netfleet compile: --out ${file}: ${file} is not a folder`);
  });

  it("--version prints the controller package's version", async () => {
    const { version } = JSON.parse(readFileSync(join(import.meta.dirname, "..", "..", "packages", "controller", "package.json"), "utf8")) as { version: string };
    expect(await run("--version")).toMatchObject({ code: 0, stdout: version });
    expect((await run("-V")).stdout).toBe(version);
  });
});

describe("netfleet completion", () => {
  const script = async (shell: string) => {
    const r = await run("completion", shell);
    expect(r.code).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), "netfleet-completion-"));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, `netfleet.${shell}`);
    writeFileSync(file, r.stdout + "\n");
    return { text: r.stdout, file };
  };

  it("bash: parses, names every command, completes subcommands and each command's own options", async () => {
    const { text, file } = await script("bash");
    execFileSync("bash", ["-n", file]);
    for (const c of COMMANDS) expect(text).toContain(`"/${c}")`);
    const empty = mkdtempSync(join(tmpdir(), "netfleet-completion-cwd-"));
    onTestFinished(() => rmSync(empty, { recursive: true, force: true }));
    const complete = (...words: string[]) =>
      execFileSync("bash", ["-c", `source "$0"; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _netfleet; echo "\${COMPREPLY[*]}"`, file, ...words], { cwd: empty, encoding: "utf8" }).trim();
    expect(complete("netfleet", "").split(" ")).toEqual([...COMMANDS, "help"]);
    expect(complete("netfleet", "hosts", "")).toBe("token approve reject revoke rekey"); // and the files of the cwd ([site-dir]): none here
    writeFileSync(join(empty, "site.yaml"), "");
    expect(complete("netfleet", "validate", "")).toBe("site.yaml");
    expect(complete("netfleet", "plan", "--")).toBe("--host --limit --json --help");
    expect(complete("netfleet", "rollout", "--l")).toBe("--limit --lock-stale");
    expect(complete("netfleet", "completion", "")).toBe("bash zsh");
    expect(complete("netfleet", "hosts", "approve", "--").split(" ")).toEqual(expect.arrayContaining(["--state-dir", "--nats", "--json"]));
    expect(complete("netfleet", "hosts", "approve", "--").split(" ")).not.toContain("--version");
    expect(complete("netfleet", "serve", SITE, "--nodes", "")).toBe("1 3");
    expect(complete("netfleet", "plan", "x", "--host", "")).toBe(""); // a host name, not a file
    expect(complete("netfleet", "compile", "x", "--out", "")).toBe("site.yaml"); // a folder: files of the cwd
    expect(text).not.toMatch(/in\n {2}esac/); // no empty case block
  });

  it("zsh: parses and names every command", async () => {
    const { text, file } = await script("zsh");
    execFileSync("zsh", ["-n", file]);
    for (const c of COMMANDS) expect(text).toContain(`'${c}:`);
  });
});

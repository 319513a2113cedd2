/**
 * The CLI conventions of @netfleet/shared/cli on a small program: usage
 * errors end with 64 and one `<prog>: <message>` line (with a suggestion
 * when a name is close), --help and --version with 0, a handler's exit code
 * returned; and the bash/zsh completion scripts generated from the tree
 * parse (`bash -n`, `zsh -n`; setup.sh installs zsh) and complete commands,
 * options and option choices.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Option } from "commander";
import { describe, expect, it, onTestFinished } from "vitest";
import { EXIT_USAGE, addCompletionCommand, bashCompletion, createProgram, errorText, runProgram, safeJson, usageError, withExitCode, zshCompletion } from "@netfleet/shared/cli";

const PACKAGE_JSON = new URL("../../packages/shared/package.json", import.meta.url);

function demo() {
  const out: string[] = [];
  const err: string[] = [];
  const program = createProgram({ name: "demo", description: "a demo", packageJson: PACKAGE_JSON, io: { out: (t) => out.push(t), err: (t) => err.push(t) } });
  program.command("plan").description("plan a site").argument("<site-dir>").option("--host <name>", "only this host").action(withExitCode(() => 3));
  const hosts = program.command("hosts").description("list hosts").option("--state-dir <dir>", "state").action(withExitCode(() => 0));
  hosts.command("approve").argument("<name>").action(withExitCode(() => 0));
  program.command("serve").addOption(new Option("--nodes <n>", "cluster size").choices(["1", "3"])).action(withExitCode((_o: unknown, cmd) => usageError(cmd, "refused")));
  addCompletionCommand(program);
  return { program, out, err };
}

async function run(argv: string[]) {
  const d = demo();
  const code = await runProgram(d.program, argv);
  return { code, out: d.out.join(""), err: d.err.join("") };
}

describe("shared CLI conventions", () => {
  it("returns the handler's exit code", async () => {
    expect((await run(["plan", "site", "--host", "a"])).code).toBe(3);
  });

  it("refuses unknown options, commands and extra arguments with 64 and a suggestion when close", async () => {
    const hots = await run(["plan", "site", "--hots", "a"]);
    expect(hots).toMatchObject({ code: EXIT_USAGE, out: "" });
    expect(hots.err).toBe("demo: unknown option '--hots'\n(Did you mean --host?)\n");
    expect((await run(["plna"])).err).toMatch(/^demo: unknown command 'plna'\n\(Did you mean plan\?\)/);
    expect((await run(["plan", "a", "b"])).code).toBe(EXIT_USAGE);
    expect((await run(["serve", "--nodes", "2"])).code).toBe(EXIT_USAGE);
    expect(await run(["serve"])).toMatchObject({ code: EXIT_USAGE, err: "demo serve: refused\n" });
    expect((await run([])).code).toBe(EXIT_USAGE);
  });

  it("--help on every command and --version exit 0", async () => {
    for (const argv of [["--help"], ["plan", "--help"], ["hosts", "approve", "--help"], ["help", "serve"], ["completion", "-h"]]) {
      const r = await run(argv);
      expect(r.code, argv.join(" ")).toBe(0);
      expect(r.out, argv.join(" ")).toMatch(/^Usage: demo/);
    }
    expect(await run(["--version"])).toMatchObject({ code: 0, out: "0.1.0\n" });
    const bundledOut: string[] = [];
    const bundled = createProgram({ name: "demo", description: "a demo", version: "9.8.7", io: { out: (t) => bundledOut.push(t), err: () => {} } });
    expect(await runProgram(bundled, ["--version"])).toBe(0);
    expect(bundledOut).toEqual(["9.8.7\n"]);
  });

  it("prints the completion script of the whole tree", async () => {
    const r = await run(["completion", "bash"]);
    expect(r.code).toBe(0);
    expect(r.out).toBe(bashCompletion(demo().program));
    expect((await run(["completion", "fish"])).code).toBe(EXIT_USAGE);
  });

  it("bash completion parses and completes commands, subcommands, options and choices", () => {
    const dir = mkdtempSync(join(tmpdir(), "cli-completion-"));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const script = join(dir, "demo.bash");
    writeFileSync(script, bashCompletion(demo().program));
    execFileSync("bash", ["-n", script]);
    const complete = (...words: string[]) =>
      execFileSync("bash", ["-c", `source "$0"; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _demo; echo "\${COMPREPLY[*]}"`, script, ...words], { cwd: dir, encoding: "utf8" }).trim();
    expect(complete("demo", "")).toBe("plan hosts serve completion help");
    expect(complete("demo", "hosts", "ap")).toBe("approve");
    expect(complete("demo", "plan", "--h")).toBe("--host --help");
    expect(complete("demo", "serve", "--nodes", "")).toBe("1 3");
    expect(complete("demo", "completion", "")).toBe("bash zsh");
  });

  it("zsh completion parses", () => {
    const dir = mkdtempSync(join(tmpdir(), "cli-completion-"));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const script = join(dir, "_demo");
    writeFileSync(script, zshCompletion(demo().program));
    execFileSync("zsh", ["-n", script]);
  });

  it("no command: the help on stdout and 64", async () => {
    const r = await run([]);
    expect(r.code).toBe(EXIT_USAGE);
    expect(r.out).toMatch(/^Usage: demo/);
  });

  it("an expected failure is one line naming the command; a bug or NETFLEET_DEBUG=1 keeps the stack", async () => {
    const d = demo();
    d.program.command("fail").action(() => {
      throw Object.assign(new Error("ENOENT: no such file or directory, open '/x'"), { code: "ENOENT" });
    });
    const err = await runProgram(d.program, ["fail"]).catch((e: unknown) => e);
    expect(errorText("demo", err, {})).toBe("demo fail: ENOENT: no such file or directory, open '/x'");
    expect(errorText("demo", err, { NETFLEET_DEBUG: "1" })).toMatch(/^demo fail: Error: ENOENT[^\n]*\n {4}at /);
    expect(errorText("demo", new Error("no controller state in /x"), {})).toBe("demo: no controller state in /x");
    expect(errorText("demo", new TypeError("x is not a function"), {})).toMatch(/^demo: TypeError: x is not a function\n {4}at /);
  });

  it("safeJson escapes the characters a terminal acts on and parses back to the same value", () => {
    const value = { name: "a\u202eb\u2028c\u0085d" };
    const text = safeJson(value);
    expect(text).toBe('{\n  "name": "a\\u202eb\\u2028c\\u0085d"\n}');
    expect(JSON.parse(text)).toEqual(value);
  });
});

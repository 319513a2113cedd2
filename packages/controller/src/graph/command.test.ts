/**
 * `netfleet graph` run as a user runs it: through main(argv) and once as
 * its own process; bad input (an invalid site folder, an unusable --out, an
 * unknown --format) is one line and changes nothing; a missing Graphviz is
 * one line naming the package.
 */
import { spawn } from "node:child_process";
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ExecaRunner } from "@netfleet/agent";
import { loadInventory } from "@netfleet/shared";
import { main } from "../main.ts";
import { memoryOutput } from "../output.ts";
import { readDot, readMermaid, readSvg } from "./__fixtures__/pictures.ts";
import { buildGraph, domId, GraphvizError, renderSvg } from "./index.ts";

const REPO = new URL("../../../..", import.meta.url).pathname;
const LAB = join(REPO, "inventories", "lab");
const model = buildGraph(loadInventory(LAB));
const tmp = mkdtempSync(join(tmpdir(), "nf-graph-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function netfleet(...args: string[]) {
  const out = memoryOutput(args.includes("--json"));
  const code = await main(args, out);
  return { code, out };
}

describe("netfleet graph", () => {
  it("--format mermaid and dot print the picture on stdout; --out FILE.svg writes the SVG (format from the extension) and says so on stderr", async () => {
    const mermaid = await netfleet("graph", LAB, "--format", "mermaid");
    expect([mermaid.code, mermaid.out.stderr]).toEqual([0, []]);
    expect(readMermaid(mermaid.out.stdout.join("\n") + "\n").nodes.size).toBe(model.elements.length - model.hosts.length);
    const dot = await netfleet("graph", LAB, "--format", "dot");
    expect(readDot(dot.out.stdout.join("\n") + "\n").nodes.has("vm:secure/vma1")).toBe(true);

    const file = join(tmp, "lab.svg");
    const svg = await netfleet("graph", LAB, "--out", file);
    expect(svg.code).toBe(0);
    expect(svg.out.stdout).toEqual([]);
    expect(svg.out.stderr).toEqual([`netfleet graph: ${model.elements.length} elements, ${model.links.length} links written to ${file} (svg)`]);
    const read = readSvg(readFileSync(file, "utf8"));
    expect(read.nodes.get("vm:secure/vma1")!.id).toBe(domId("vm:secure/vma1"));
  });

  it("--json: the elements, links and the picture (or where it went)", async () => {
    const { code, out } = await netfleet("graph", LAB, "--format", "dot", "--json");
    expect(code).toBe(0);
    const doc = out.values[0] as { site: string; format: string; live: boolean; elements: { id: string; kind: string }[]; links: unknown[]; picture: string };
    expect([doc.site, doc.format, doc.live]).toEqual(["lab", "dot", false]);
    expect(doc.elements.map((e) => e.id)).toEqual(model.elements.map((e) => e.id));
    expect(doc.links).toHaveLength(model.links.length);
    expect(readDot(doc.picture).nodes.size).toBe(model.elements.length - model.hosts.length);
    const file = join(tmp, "lab.mmd");
    const written = await netfleet("graph", LAB, "--out", file, "--json");
    expect((written.out.values[0] as { format: string; out: string; picture?: string }).format).toBe("mermaid");
    expect((written.out.values[0] as { out: string }).out).toBe(file);
    expect(readMermaid(readFileSync(file, "utf8")).links).toHaveLength(model.links.length);
  });

  it("an invalid site folder: its file:line:col problems, exit 2, no file written; an unusable --out: one line, exit 2; a bad --format: 64", async () => {
    const bad = join(REPO, "test", "unit", "bad-inventories", "allow-to-and-name");
    const file = join(tmp, "never.svg");
    const { code, out } = await netfleet("graph", bad, "--out", file);
    const validate = await netfleet("validate", bad);
    expect(code).toBe(2);
    expect(out.stderr).toEqual(validate.out.stderr);
    expect(out.stderr[0]).toMatch(/\.yaml:\d+:\d+: /);
    expect(existsSync(file)).toBe(false);

    const nowhere = await netfleet("graph", LAB, "--out", join(tmp, "no-such-dir", "x.svg"));
    expect([nowhere.code, nowhere.out.stderr]).toEqual([2, [`netfleet graph: cannot write --out ${join(tmp, "no-such-dir", "x.svg")}: ENOENT`]]);
    const png = await netfleet("graph", LAB, "--format", "png");
    expect([png.code, png.out.stderr]).toEqual([64, ["netfleet: option '--format <format>' argument 'png' is invalid. Allowed choices are svg, dot, mermaid."]]);
  });

  it("--out never writes through a symlink (refused, its target untouched) and never blocks on a FIFO (replaced by the file)", async () => {
    const target = join(tmp, "target.txt");
    writeFileSync(target, "keep\n");
    const link = join(tmp, "link.dot");
    symlinkSync(target, link);
    const viaLink = await netfleet("graph", LAB, "--format", "dot", "--out", link);
    expect([viaLink.code, viaLink.out.stderr]).toEqual([2, [`netfleet graph: cannot write --out ${link}: ${link}: is a symbolic link; refused, nothing written`]]);
    expect(readFileSync(target, "utf8")).toBe("keep\n");
    const fifo = join(tmp, "fifo.dot");
    execFileSync("mkfifo", [fifo]);
    const viaFifo = await netfleet("graph", LAB, "--format", "dot", "--out", fifo);
    expect(viaFifo.code).toBe(0);
    expect(lstatSync(fifo).isFile()).toBe(true);
    expect(readFileSync(fifo, "utf8")).toMatch(/^graph "netfleet lab" \{/);
  });

  it("without Graphviz's dot on PATH: GraphvizError naming the package (the command prints it as one line, exit 1)", async () => {
    const error = await renderSvg(model, undefined, new ExecaRunner({ env: { PATH: join(tmp, "empty") } })).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(GraphvizError);
    expect((error as GraphvizError).message).toBe("Graphviz's dot is not installed (Debian: apt-get install graphviz); --format dot or mermaid need no tool");
  });

  it("as its own process: exit 0 and the picture on stdout; --help lists the formats and --live", async () => {
    const run = (args: string[]) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn("sh", [join(REPO, "scripts/node.sh"), join(REPO, "packages/controller/src/cli.ts"), ...args], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        child.once("close", (code) => resolve({ code, stdout, stderr }));
      });
    const proc = await run(["graph", join(REPO, "inventories", "reference"), "--format", "dot"]);
    expect([proc.code, proc.stderr]).toEqual([0, ""]);
    expect(readDot(proc.stdout).boxes.has("host:hv3")).toBe(true);
    const help = await run(["graph", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--format <format>/);
    expect(help.stdout).toMatch(/--live/);
  }, 60_000);
});

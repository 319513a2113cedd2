import { ExecaRunner, ExecError, read, type Runner } from "@netfleet/agent";
import { renderDot } from "./dot.ts";
import type { LiveStates } from "./live.ts";
import type { GraphModel } from "./types.ts";

/** Graphviz's `dot` could not draw the picture: not installed, or it failed. */
export class GraphvizError extends Error {
  readonly argv: string[];
  readonly exitCode: number;
  constructor(message: string, argv: string[], exitCode: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "GraphvizError";
    this.argv = argv;
    this.exitCode = exitCode;
  }
}

/** The command that lays out and draws: Graphviz `dot -Tsvg`, the DOT text on stdin (dot(1)). */
export const DOT_SVG_ARGV = ["dot", "-Tsvg"] as const;

/** How long `dot` may take; the reference site takes well under a second. */
const DOT_TIMEOUT_MS = 30_000;

/**
 * The picture as an SVG document: renderDot's text laid out by Graphviz
 * (`dot -Tsvg`, run through `runner`, argv, no shell), returned from
 * `<svg` on: without the XML declaration, DOCTYPE and generator comment, so
 * it embeds inline in HTML and references nothing outside itself. Each
 * element is a `<g>` with `id` = domId(element id) and `class` =
 * `node|cluster nf-<kind> [nf-<state>]`, its `<title>` the element id.
 * @throws GraphvizError when `dot` is missing (exit 127) or fails.
 */
export async function renderSvg(model: GraphModel, live?: LiveStates, runner: Runner = new ExecaRunner({ timeoutMs: DOT_TIMEOUT_MS })): Promise<string> {
  const argv = [...DOT_SVG_ARGV];
  let stdout: string;
  try {
    ({ stdout } = await runner.run({ ...read(...argv), stdin: renderDot(model, live) }));
  } catch (err) {
    if (!(err instanceof ExecError)) throw err;
    const missing = err.exitCode === 127 || /ENOENT/.test(err.stderr);
    throw new GraphvizError(
      missing
        ? "Graphviz's dot is not installed (Debian: apt-get install graphviz); --format dot or mermaid need no tool"
        : `dot -Tsvg failed (exit ${err.exitCode}): ${err.stderr.trim().split("\n").slice(-3).join(" / ")}`,
      argv,
      err.exitCode,
      { cause: err },
    );
  }
  const start = stdout.indexOf("<svg");
  if (start < 0) throw new GraphvizError("dot -Tsvg printed no <svg> element", argv, 0);
  return stdout.slice(start);
}

/**
 * `netfleet bootstrap` exactly as main.ts wires it (same parseArgs options),
 * so the suite can run the command inside the controller namespace before
 * the wiring lands: node run-bootstrap.ts <site-dir> [options].
 */
import { parseArgs } from "node:util";
import { bootstrapCommand, bootstrapOptions } from "../../packages/controller/src/commands/bootstrap.ts";
import { loadOrReport } from "../../packages/controller/src/commands/validate.ts";
import { consoleOutput } from "../../packages/controller/src/output.ts";

async function run(argv: string[]): Promise<number> {
  const parsed = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      json: { type: "boolean", default: false },
      limit: { type: "string" },
      nats: { type: "string" },
      token: { type: "string" },
      "accept-new": { type: "boolean", default: false },
      concurrency: { type: "string" },
      identity: { type: "string" },
      "known-hosts": { type: "string" },
      user: { type: "string" },
      port: { type: "string" },
      "image-root": { type: "string" },
    },
  });
  const o = consoleOutput(parsed.values.json ?? false);
  if (parsed.positionals.length !== 1) {
    o.error("netfleet bootstrap: expected exactly one site folder, e.g. inventories/lab");
    return 64;
  }
  let opts;
  try {
    opts = bootstrapOptions(parsed.values);
  } catch (err) {
    o.error(`netfleet bootstrap: ${(err as Error).message}`);
    return 64;
  }
  const inventory = loadOrReport(parsed.positionals[0]!, o);
  if (!inventory) return 2;
  return bootstrapCommand(inventory, opts, o);
}

process.exitCode = await run(process.argv.slice(2));

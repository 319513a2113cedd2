import { main } from "./main.ts";

process.exitCode = await main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`netfleet-agent: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return 1;
});

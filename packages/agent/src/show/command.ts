import { ExecaRunner } from "../exec/runner.ts";
import type { Toolbox } from "../tools.ts";
import { observeHost } from "./observe.ts";
import { renderHostView } from "./render.ts";

/**
 * `netfleet-agent show [--json]`: reads this host (read-only commands
 * only, observe.ts) and prints it as text (render.ts) or as the HostView
 * JSON that `netfleet show HOST --json` carries in its `view`. Returns the
 * exit code: 0, also when a tool could not be read (the view's `problems`
 * and the text's "Not read" name it).
 */
export async function showCommand(tools: Toolbox, o: { json: boolean; name?: string }, write: (text: string) => void = (t) => void process.stdout.write(t)): Promise<number> {
  const view = await observeHost({ runner: new ExecaRunner(), tools, ...(o.name !== undefined ? { host: o.name } : {}) });
  write(o.json ? JSON.stringify(view, null, 2) + "\n" : renderHostView(view));
  return 0;
}

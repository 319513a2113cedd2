import { ExecaRunner } from "../exec/runner.ts";
import { AgentState } from "../fleet/state.ts";
import type { Toolbox } from "../tools.ts";
import { observeHost } from "./observe.ts";
import { renderHostView } from "./render.ts";

/**
 * `netfleet-agent show [--json]`: reads this host (read-only commands
 * only, observe.ts) and prints it as text (render.ts; its first line names
 * the revision of the fleet agent's checkpoint in the state dir, when there
 * is one) or as the HostView JSON that `netfleet show HOST --json` carries
 * in its `view`. Returns the
 * exit code: 0, also when a tool could not be read (the view's `problems`
 * and the text's "Not read" name it).
 */
export async function showCommand(tools: Toolbox, o: { json: boolean; name?: string }, write: (text: string) => void = (t) => void process.stdout.write(t)): Promise<number> {
  const view = await observeHost({ runner: new ExecaRunner(), tools, ...(o.name !== undefined ? { host: o.name } : {}) });
  if (o.json) {
    write(JSON.stringify(view, null, 2) + "\n");
    return 0;
  }
  // An unreadable or absent checkpoint: nothing to say about the revision, the view is still shown.
  const current = (await new AgentState(tools.stateDir).checkpoint().catch(() => ({ current: undefined }))).current;
  write(renderHostView(view, current ? { revision: current.revision, hash: current.assignment.hash } : undefined));
  return 0;
}

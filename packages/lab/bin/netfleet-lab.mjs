#!/usr/bin/env node
// Starts src/cli.ts with a Node that strips types (see @netfleet/shared/cli/launch).
import { launch } from "@netfleet/shared/cli/launch";

await launch("netfleet-lab", new URL("../src/cli.ts", import.meta.url));

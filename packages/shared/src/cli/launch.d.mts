// Types of launch.mjs (plain JavaScript: it runs before we know that this Node can strip types).

/** Node flags the controller's CLI is started with where we start it; see launch.mjs. */
export declare const CONTROLLER_NODE_FLAGS: readonly string[];

/** V8 flags the long-running controller commands set for themselves; see launch.mjs. */
export declare const LONG_RUNNING_V8_FLAGS: readonly string[];

/** Sets LONG_RUNNING_V8_FLAGS in this process (v8.setFlagsFromString); see launch.mjs. */
export declare function boundOldGeneration(): void;

/** Starts a CLI's TypeScript entry from its bin file; see launch.mjs. */
export declare function launch(name: string, entry: URL): Promise<void>;

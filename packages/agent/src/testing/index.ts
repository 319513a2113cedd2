/**
 * Test doubles of the agent (`@netfleet/agent/testing`), kept out of the
 * main entry: a runner that records commands and answers from a script, and
 * a simulated host whose state lives in a file (NATS suites, benchmarks).
 */
export { RecordingRunner, type ScriptedReply } from "../exec/recording-runner.ts";
export { SimulatedHostRunner, type SimulatedHostOptions } from "./simulated-host.ts";

export type { LabHost, LabOptions, LabStatus, LabVm } from "./types.ts";
export { agentCommand, labDown, labStatus, labUp, readLabState, type LabState } from "./lab.ts";
export { buildTopology, vmAddresses, vmPortName, type Topology } from "./topology.ts";
export { CAPS_SEED } from "./libvirt.ts";

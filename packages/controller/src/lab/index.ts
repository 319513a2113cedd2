export type { LabGateway, LabHost, LabLag, LabOptions, LabStatus, LabVm } from "./types.ts";
export { agentCommand, controllerCommand, INET_NAMES, labDown, labReplugVm, labRestartOvs, labStartAgent, labStatus, labStopAgent, labUp, namespaceVms, readLabState, type LabState } from "./lab.ts";
export { LABNET, readLease, type Lease } from "./services.ts";
export { buildTopology, vmPortName, type Topology } from "./topology.ts";
export { CAPS_SEED } from "./libvirt.ts";
export { appctl, parseBondShow, parseLacpShow, switchArgs, switchLagPort, type BondShow, type LacpMember } from "./switch.ts";

/**
 * @netfleet/lab: build a site as network namespaces (real OVS, libvirtd,
 * dnsmasq, nftables), drive the product on it through its commands, and
 * probe the result (connectivity matrix, crafted-frame attacks). The
 * entry for test/lab, test/bench and test/bootstrap.
 */
export type { LabController, LabGateway, LabHost, LabLag, LabOptions, LabStatus, LabVm } from "./types.ts";
export { labUp } from "./up.ts";
export { labDown } from "./down.ts";
export { labStatus } from "./status.ts";
export { labController, labRollout, LabShapeError, shellLine, type LabRolloutResult } from "./playground.ts";
export { topologyChanges } from "./topology-diff.ts";
export { readLabState, type LabState } from "./state.ts";
export { agentCommand, controllerCommand, labStartAgent, labStopAgent } from "./agents.ts";
export { labRestartOvs } from "./ovs.ts";
export { labReplugVm, namespaceVms } from "./vms.ts";
export { dhcp, INET_NAMES, LABNET, readLease, type Lease } from "./services.ts";
export { buildTopology, vmPortName, type Topology } from "./topology.ts";
export { CAPS_SEED } from "./libvirt.ts";
export { appctl, parseBondShow, parseLacpShow, switchArgs, switchLagPort, type BondShow, type LacpMember } from "./switch.ts";
export { LabExec } from "./exec.ts";
export { labProcesses, namespaceExists, namespacesWithPrefix, netnsInode, readPidfile, terminate } from "./procs.ts";
export { productBin } from "./product.ts";
export { connectivityProbes, runProbes } from "./checks/connectivity.ts";
export type { CheckRow } from "./checks/rows.ts";
export { tcpConnect } from "./checks/probes.ts";
export { attackProbes } from "./checks/attack.ts";
export type { AttackRow, Sender } from "./checks/attack-types.ts";
export { labAttack } from "./checks/attack-run.ts";
export { measureWindow, type WindowResult } from "./checks/window.ts";
export { labEmptyVmHosts, labPlugVmPorts, labSshd, type SshTarget, type SshTargets } from "./ansible.ts";
export { SSHD, SSHD_MAX_LISTEN, sshdArgv, sshdConfig, sshdFiles, sshKeygen, startSshd, stopSshd, writeSshdFiles, type SshdFiles } from "./sshd.ts";

import { createToken } from '../tokens.js';

export interface CpuFacts {
  vendor: string;
  model: string;
  features: string[];
}

export interface CpuVerdict {
  compatible: boolean;
  /** Features the VM's CPU uses that the destination lacks. */
  missing: string[];
}

/** CPU compatibility between a VM's effective CPU and a host. */
export interface CpuCompatPolicy {
  hostFacts(): Promise<CpuFacts>;
  check(vmCpuModel: string, destination: CpuFacts): Promise<CpuVerdict>;
}

export const CpuCompatPolicyToken = createToken<CpuCompatPolicy>('cpu.compat-policy');

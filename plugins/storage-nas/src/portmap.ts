/** Portmapper v2 GETPORT (RFC 1833 §3): where a program listens. */
import { nasError } from './errors.js';
import { RpcClient } from './rpc-client.js';
import { decodeXdr, XdrWriter } from './xdr.js';

export const PMAP_PROG = 100000;
export const PMAP_VERS = 2;
export const PMAP_PORT = 111;
const PMAPPROC_GETPORT = 3;
export const IPPROTO_TCP = 6;

export interface GetPortOptions {
  host: string;
  port?: number;
  timeoutMs: number;
  /** Sees every record sent and received (for traffic capture in tests). */
  onRecord?: (direction: 'call' | 'reply', record: Buffer) => void;
}

/** The TCP port of `prog`/`vers` on `host`; fails with a clear error if it is not registered. */
export async function getPort(prog: number, vers: number, opts: GetPortOptions): Promise<number> {
  const client = new RpcClient({ host: opts.host, port: opts.port ?? PMAP_PORT, prog: PMAP_PROG, vers: PMAP_VERS, auth: { flavor: 'none' }, timeoutMs: opts.timeoutMs, service: 'portmapper', ...(opts.onRecord ? { onRecord: opts.onRecord } : {}) });
  try {
    const args = new XdrWriter().uint32(prog).uint32(vers).uint32(IPPROTO_TCP).uint32(0).toBuffer();
    const results = await client.call(PMAPPROC_GETPORT, args, { name: 'GETPORT' });
    const port = decodeXdr(results, (r) => r.uint32('port'), true);
    if (!port.ok) throw nasError('MOTUS_E_NFS_PROTOCOL', `portmapper at ${client.endpoint} sent a malformed GETPORT reply: ${port.error.message}`);
    if (port.value === 0 || port.value > 65535) {
      throw nasError('MOTUS_E_NFS_RPC_REJECTED', `program ${prog} version ${vers} over TCP is not registered with the portmapper at ${client.endpoint}`, { prog, vers, endpoint: client.endpoint });
    }
    return port.value;
  } finally {
    await client.close();
  }
}

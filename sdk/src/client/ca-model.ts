/** A certificate as the API describes it (never a key). */
export interface CertificateInfo {
  subject: string;
  fingerprint256: string;
  notBefore: string;
  notAfter: string;
}

/** The site CA: its generation (1 at creation, +1 per rotation) and the previous CA, still trusted until the next rotation. */
export interface CaInfo extends CertificateInfo {
  generation: number;
  previous?: CertificateInfo;
}

/** What `POST /v1/ca/rotate` did: the new CA, the hosts that got new certificates and those that could not. */
export interface CaRotation {
  ca: CaInfo;
  renewed: string[];
  failed: Array<{ host: string; error: string }>;
}

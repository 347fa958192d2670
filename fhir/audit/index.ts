/** The audit trail: AuditEvents, their hash chain, its sealer, verifier and API operations. */
export { AuditLog } from './audit-log.js';
export { chainHash, chainHead, GENESIS_HASH } from './chain.js';
export type { ChainHead } from './chain.js';
export { AuditSealer } from './sealer.js';
export { verifyAuditChain } from './verify.js';
export type { ChainProblem, ChainVerification } from './verify.js';
export { auditChainOperations, auditEventHandlers } from './operations.js';
export type { ChainHeadSigner } from './operations.js';

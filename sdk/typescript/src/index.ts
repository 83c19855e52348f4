/**
 * Countersign for TypeScript: ask a person to sign off, by email or Slack, and get the answer.
 *
 *   import { Countersign } from "countersign";
 *   const client = new Countersign(); // COUNTERSIGN_URL, COUNTERSIGN_API_KEY
 *   const outcome = await client.requestApproval({ action: "Deploy v1.2 to prod", approver: "alice@example.com" });
 */

export {
  type CallOptions,
  type ClientOptions,
  type CreateOptions,
  type GetOptions,
  type IterOptions,
  type RequestApprovalOptions,
  type WaitOptions,
  Countersign,
  DEFAULT_BASE_URL,
  MAX_LONG_POLL_SECONDS,
  newIdempotencyKey,
} from "./client.js";
export {
  type ErrorFields,
  APIError,
  ApprovalTimeout,
  AuthenticationError,
  Conflict,
  ConnectionFailed,
  CountersignError,
  InvalidRequest,
  NotFound,
  PayloadTooLarge,
  PermissionDenied,
  RateLimited,
  ServerError,
  WebhookVerificationError,
} from "./errors.js";
export * from "./types.js";
export { type WebhookHeaders, verifyWebhook } from "./webhooks.js";
export { VERSION } from "./version.js";

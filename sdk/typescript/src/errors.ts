/**
 * Errors. Every error answer of the API becomes an `APIError` subclass carrying the contract's
 * error body: `{"error": {"code", "message", "fields"}}`. All errors derive from
 * `CountersignError`, so one `instanceof` catches everything this package throws.
 */

import type { Decision } from "./types.js";

/** Base of everything this package throws. */
export class CountersignError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** `fields`: which input was refused and why, e.g. `{"timeout_minutes": ["Must be more than 0."]}`. */
export type ErrorFields = Record<string, unknown>;

/** The service answered with an error status. */
export class APIError extends CountersignError {
  /** The HTTP status. */
  readonly status: number;
  /** The contract's error code, e.g. `invalid`, `not_found`; `http_<status>` when the body had none. */
  readonly code: string;
  readonly fields: ErrorFields;
  /** The parsed JSON (or the text) exactly as the service sent it. */
  readonly body: unknown;
  readonly headers: Headers;

  constructor(init: {
    status: number;
    code: string;
    message: string;
    fields?: ErrorFields;
    body?: unknown;
    headers?: Headers;
  }) {
    // `message` is the contract's message as sent; the class, `status` and `code` say the rest.
    super(init.message);
    this.status = init.status;
    this.code = init.code;
    this.fields = init.fields ?? {};
    this.body = init.body;
    this.headers = init.headers ?? new Headers();
  }
}

/** 400: the input was refused; `fields` says which and why. */
export class InvalidRequest extends APIError {}
/** 401: no API key, a wrong one, or a revoked one. */
export class AuthenticationError extends APIError {}
/** 403: the key lacks the scope this endpoint needs. */
export class PermissionDenied extends APIError {}
/** 404: no such decision in this key's organization. */
export class NotFound extends APIError {}
/** 409: e.g. cancelling a decision that is no longer pending, or an Idempotency-Key reused with a different body. */
export class Conflict extends APIError {}
/** 413: the body is too large. */
export class PayloadTooLarge extends APIError {}

/** 429, after the client's own retries ran out. */
export class RateLimited extends APIError {
  /** Seconds the service asked to wait (`Retry-After`), if it said. */
  get retryAfter(): number | null {
    return retryAfterSeconds(this.headers.get("retry-after"));
  }
}

/** 5xx, after the client's own retries ran out. */
export class ServerError extends APIError {}

/** The service could not be reached (after retries). `cause` is the underlying error. */
export class ConnectionFailed extends CountersignError {}

/**
 * `requestApproval({timeout})` stopped waiting before anyone answered. The decision is still
 * pending on the service (its own deadline still applies); `decision` is its last state.
 */
export class ApprovalTimeout extends CountersignError {
  readonly decision: Decision;

  constructor(decision: Decision) {
    super(`${decision.id} is still pending`);
    this.decision = decision;
  }
}

/** A callback's signature, timestamp or body is not what Countersign would send. */
export class WebhookVerificationError extends CountersignError {}

const BY_STATUS: Record<number, typeof APIError> = {
  400: InvalidRequest,
  401: AuthenticationError,
  403: PermissionDenied,
  404: NotFound,
  409: Conflict,
  413: PayloadTooLarge,
  429: RateLimited,
};

/**
 * The error for an error answer, with the contract's error body when there is one (a proxy in
 * front of the service may answer with HTML: then the code is `http_<status>`).
 */
export function errorFromResponse(response: Response, text: string): APIError {
  const status = response.status;
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  const error = isObject(body) ? body["error"] : undefined;
  let code: string;
  let message: string;
  let fields: ErrorFields = {};
  if (isObject(error)) {
    code = stringOr(error["code"], `http_${status}`);
    message = stringOr(error["message"], response.statusText || `HTTP ${status}`);
    if (isObject(error["fields"])) fields = error["fields"];
  } else {
    code = `http_${status}`;
    message = text.slice(0, 200) || response.statusText || `HTTP ${status}`;
  }
  const Kind = BY_STATUS[status] ?? (status >= 500 ? ServerError : APIError);
  return new Kind({ status, code, message, fields, body, headers: response.headers });
}

export function retryAfterSeconds(value: string | null): number | null {
  if (!value) return null;
  const seconds = Number(value);
  // An HTTP date is rare enough that the caller's own backoff will do.
  return Number.isFinite(seconds) ? Math.max(0, seconds) : null;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function stringOr(value: unknown, fallback: string): string {
  return typeof value === "string" && value ? value : fallback;
}

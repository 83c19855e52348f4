/**
 * Callbacks: verify that a POST really comes from Countersign, then read the decision in it.
 *
 * Countersign signs each callback per Standard Webhooks (webhook-id, webhook-timestamp,
 * webhook-signature) with the organization's `whsec_…` secret (`manage.py webhook_secret`).
 * Verification is done by the `standardwebhooks` reference library.
 */

import { Webhook } from "standardwebhooks";

import { WebhookVerificationError } from "./errors.js";
import { type Decision, type WebhookEvent, approvalOutcome } from "./types.js";

/** Headers as a fetch `Headers`, Node's `req.headers`, or any plain object (names in any case). */
export type WebhookHeaders =
  | Headers
  | Record<string, string | string[] | undefined>
  | Iterable<[string, string]>;

const decoder = new TextDecoder("utf-8");

/**
 * The verified event. `body` must be the raw body as received (not re-serialized JSON).
 * `secret` may be several secrets, e.g. the old and the new one while rotating. Throws
 * `WebhookVerificationError` when no secret's signature matches, the timestamp is more than
 * 5 minutes off (a replay), or the body is not a decision event.
 */
export function verifyWebhook(
  body: string | Uint8Array | ArrayBuffer,
  headers: WebhookHeaders,
  secret: string | readonly string[],
): WebhookEvent {
  const text = typeof body === "string" ? body : decoder.decode(body);
  const lowered = lowerHeaders(headers);
  const secrets = typeof secret === "string" ? [secret] : [...secret];
  if (!secrets.length) throw new WebhookVerificationError("no webhook secret configured");
  let lastError: unknown = null;
  let verified = false;
  for (const candidate of secrets) {
    try {
      new Webhook(candidate).verify(text, lowered, { jsonParse: false });
      verified = true;
      break;
    } catch (error) {
      // The library throws its own error for a bad signature or timestamp, and plain errors
      // for a malformed secret: all of them mean "not verified".
      lastError = error;
    }
  }
  if (!verified) {
    const reason = lastError instanceof Error ? lastError.message : String(lastError);
    throw new WebhookVerificationError(`signature not verified: ${reason}`, { cause: lastError });
  }
  return readEvent(text, lowered["webhook-id"] ?? "");
}

function readEvent(text: string, webhookId: string): WebhookEvent {
  let payload: unknown;
  try {
    payload = JSON.parse(text);
  } catch (error) {
    throw new WebhookVerificationError("signed, but not JSON", { cause: error });
  }
  const event = payload as WebhookEvent["raw"];
  const data = event?.data as Decision | undefined;
  if (
    typeof event !== "object" ||
    event === null ||
    typeof event.type !== "string" ||
    typeof data !== "object" ||
    data === null ||
    typeof data.id !== "string" ||
    typeof data.status !== "string"
  ) {
    throw new WebhookVerificationError("signed, but not a Countersign event");
  }
  return {
    id: webhookId,
    type: event.type,
    timestamp: String(event.timestamp ?? ""),
    decision: data,
    outcome: approvalOutcome(data),
    raw: event,
  };
}

function lowerHeaders(headers: WebhookHeaders): Record<string, string> {
  const lowered: Record<string, string> = {};
  const entries: Iterable<[string, unknown]> =
    Symbol.iterator in headers
      ? (headers as Iterable<[string, string]>)
      : Object.entries(headers as Record<string, unknown>);
  for (const [name, value] of entries) {
    if (value === undefined) continue;
    // Node joins repeated headers into an array; a Standard Webhooks header is never repeated.
    lowered[name.toLowerCase()] = Array.isArray(value) ? value.join(", ") : String(value);
  }
  return lowered;
}

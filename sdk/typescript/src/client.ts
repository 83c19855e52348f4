/**
 * The client.
 *
 *   const client = new Countersign();   // COUNTERSIGN_URL, COUNTERSIGN_API_KEY
 *   const outcome = await client.requestApproval({
 *     action: "Refund $120 to order #1042", details: { amount: 120 }, approver: "alice@example.com",
 *   });
 *   if (outcome.approved) { ... }
 *
 * Durations are in seconds throughout, as in the API (`?wait=30`) and the Python SDK.
 */

import { randomUUID } from "node:crypto";

import {
  APIError,
  ApprovalTimeout,
  ConnectionFailed,
  CountersignError,
  errorFromResponse,
  retryAfterSeconds,
} from "./errors.js";
import {
  type ApprovalOutcome,
  type Decision,
  type DecisionCreate,
  type DecisionFilters,
  type DecisionListParams,
  type DecisionPage,
  approvalOutcome,
} from "./types.js";
import { VERSION } from "./version.js";

export const DEFAULT_BASE_URL = "http://127.0.0.1:8000";
/** The service holds a long-poll at most this long. */
export const MAX_LONG_POLL_SECONDS = 60;
// A long-poll is answered after at most `wait` seconds; give the network this much on top.
const LONG_POLL_GRACE_SECONDS = 30;
// Worth trying again: rate limited, or a proxy/load balancer in front of the service hiccupped.
const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);

// What POST /decisions takes (the contract). Checked before sending, for JavaScript callers
// and objects built at run time, where TypeScript's excess-property check does not reach.
const DECISION_FIELDS = new Set([
  "action",
  "context",
  "details",
  "approver",
  "approvers",
  "quorum",
  "stages",
  "options",
  "response",
  "allow_edit",
  "urgency",
  "timeout_minutes",
  "on_timeout",
  "verification",
  "requested_by",
  "distinct_stage_approvers",
  "escalation",
  "escalation_repeat",
  "reminders",
  "callback_url",
  "metadata",
]);

export interface ClientOptions {
  /** Default: `COUNTERSIGN_URL`, else http://127.0.0.1:8000 (`make dev`). */
  baseUrl?: string;
  /** Default: `COUNTERSIGN_API_KEY`. */
  apiKey?: string;
  /** Seconds to wait for an answer to one request (a long-poll gets its `wait` on top). Default 30. */
  timeout?: number;
  /** Retries of connection errors, timeouts, 429 and 502/503/504. Default 3. */
  maxRetries?: number;
  /** Seconds before the first retry, doubled each time (with jitter). Default 0.5. */
  backoff?: number;
  /** Cap of the backoff, in seconds. Default 8. */
  maxBackoff?: number;
  /** A fetch of your own (a proxy agent, instrumentation). Default: the global fetch. */
  fetch?: typeof fetch;
}

export interface CallOptions {
  /** Aborts the call, including its retries and long-polls; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface CreateOptions extends CallOptions {
  /**
   * Without one, a fresh key is made up, so the retries of this call are the same request;
   * pass your own to make a retry of *your* call safe too (the same key with the same body
   * returns the first decision; with a different body it is a `Conflict`).
   */
  idempotencyKey?: string;
}

export interface GetOptions extends CallOptions {
  /** Long-poll: hold the request until the decision leaves pending, at most this many seconds (≤ 60). */
  wait?: number;
}

export interface WaitOptions extends CallOptions {
  /** Seconds to wait at most; then the still-pending decision is returned. Default: until resolved. */
  timeout?: number;
}

export interface RequestApprovalOptions extends CreateOptions {
  /** Seconds to wait at most; then `ApprovalTimeout` (the decision stays pending on the service). */
  timeout?: number;
  /** Sees the new decision before the wait starts (e.g. to log its id). */
  onCreated?: (decision: Decision) => void | Promise<void>;
}

export interface IterOptions extends DecisionFilters {
  /** Decisions fetched per request (1..200). */
  pageSize?: number;
}

type Query = Record<string, string | undefined>;

interface SendInit extends CallOptions {
  query?: Query;
  body?: unknown;
  headers?: Record<string, string>;
  /** Seconds for this request. */
  timeout?: number;
}

interface Answer {
  response: Response;
  text: string;
  retries: number;
}

/**
 * A client for one organization (the API key's). Safe to share.
 *
 * Connection errors, timeouts, 429 and 502/503/504 are retried `maxRetries` times with
 * backoff; a create is retried with the same Idempotency-Key, so a retry never asks twice.
 */
export class Countersign {
  readonly baseUrl: string;
  readonly timeout: number;
  readonly maxRetries: number;
  readonly backoff: number;
  readonly maxBackoff: number;
  readonly #apiKey: string;
  readonly #fetch: typeof fetch;

  constructor(options: ClientOptions = {}) {
    const env = typeof process === "undefined" ? {} : process.env;
    const baseUrl = options.baseUrl || env["COUNTERSIGN_URL"] || DEFAULT_BASE_URL;
    const apiKey = options.apiKey || env["COUNTERSIGN_API_KEY"];
    if (!apiKey) {
      throw new CountersignError("No API key: pass { apiKey } or set COUNTERSIGN_API_KEY.");
    }
    new URL(baseUrl); // a malformed URL fails here, not on every call
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.#apiKey = apiKey;
    this.timeout = options.timeout ?? 30;
    this.maxRetries = options.maxRetries ?? 3;
    this.backoff = options.backoff ?? 0.5;
    this.maxBackoff = options.maxBackoff ?? 8;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  // --- the API ---------------------------------------------------------------------------

  /** `POST /decisions`: ask. Answers with the new decision (or, for a repeated Idempotency-Key, the first one). */
  async create(request: DecisionCreate, options: CreateOptions = {}): Promise<Decision> {
    const answer = await this.#send("POST", "/decisions", {
      body: decisionBody(request),
      headers: { "Idempotency-Key": options.idempotencyKey ?? newIdempotencyKey() },
      signal: options.signal,
    });
    return jsonOf(answer) as unknown as Decision;
  }

  /** `GET /decisions/{id}`; with `wait` (≤ 60 s), held until it leaves pending. */
  async get(decisionId: string, options: GetOptions = {}): Promise<Decision> {
    const wait = options.wait ? clamp(options.wait, 0, MAX_LONG_POLL_SECONDS) : 0;
    const answer = await this.#send("GET", `/decisions/${encodeURIComponent(decisionId)}`, {
      query: wait ? { wait: waitParam(wait) } : {},
      timeout: this.timeout + (wait ? wait + LONG_POLL_GRACE_SECONDS : 0),
      signal: options.signal,
    });
    return jsonOf(answer) as unknown as Decision;
  }

  /**
   * Long-poll until the decision is resolved, or `timeout` seconds pass (then the pending
   * decision is returned). No timeout: until resolved, which the service's own deadline
   * guarantees. No polling loop: each request is held by the service until something happens.
   */
  async wait(decisionId: string, options: WaitOptions = {}): Promise<Decision> {
    const deadline = options.timeout === undefined ? null : Date.now() + options.timeout * 1000;
    for (;;) {
      const remaining = deadline === null ? MAX_LONG_POLL_SECONDS : (deadline - Date.now()) / 1000;
      const decision = await this.get(decisionId, {
        wait: clamp(remaining, 0, MAX_LONG_POLL_SECONDS),
        signal: options.signal,
      });
      if (decision.status !== "pending" || (deadline !== null && Date.now() >= deadline)) {
        return decision;
      }
    }
  }

  /** `POST /decisions/{id}/cancel`. Throws `Conflict` unless it was pending. */
  async cancel(decisionId: string, options: CallOptions = {}): Promise<Decision> {
    const path = `/decisions/${encodeURIComponent(decisionId)}/cancel`;
    const answer = await this.#send("POST", path, { signal: options.signal });
    if (answer.response.status === 409 && answer.retries > 0) {
      // Our first attempt may have cancelled it before its answer was lost.
      const decision = await this.get(decisionId, { signal: options.signal });
      if (decision.status === "cancelled") return decision;
    }
    return jsonOf(answer) as unknown as Decision;
  }

  /** `GET /decisions`: one page, newest first. */
  async list(params: DecisionListParams = {}, options: CallOptions = {}): Promise<DecisionPage> {
    const answer = await this.#send("GET", "/decisions", {
      query: {
        status: params.status,
        created_after: isoOf(params.created_after),
        created_before: isoOf(params.created_before),
        limit: params.limit === undefined ? undefined : String(params.limit),
        cursor: params.cursor,
      },
      signal: options.signal,
    });
    const data = jsonOf(answer);
    return {
      results: Array.isArray(data["results"]) ? (data["results"] as Decision[]) : [],
      nextCursor: cursorOf(data["next"]),
      previousCursor: cursorOf(data["previous"]),
    };
  }

  /** Every matching decision, newest first, fetching pages as it goes: `for await (const d of …)`. */
  async *iterDecisions(filters: IterOptions = {}, options: CallOptions = {}): AsyncGenerator<Decision> {
    const { pageSize, ...rest } = filters;
    let cursor: string | undefined;
    for (;;) {
      const page = await this.list({ ...rest, limit: pageSize, cursor }, options);
      yield* page.results;
      if (!page.nextCursor) return;
      cursor = page.nextCursor;
    }
  }

  /**
   * Ask, and wait until the decision is resolved; answers with its outcome (approved, denied,
   * responded, expired or cancelled). Throws `ApprovalTimeout` if `timeout` seconds pass first.
   */
  async requestApproval(
    request: DecisionCreate,
    options: RequestApprovalOptions = {},
  ): Promise<ApprovalOutcome> {
    const { timeout, onCreated, ...createOptions } = options;
    const created = await this.create(request, createOptions);
    if (onCreated) await onCreated(created);
    const decision = await this.wait(created.id, { timeout, signal: options.signal });
    const outcome = approvalOutcome(decision);
    if (!outcome) throw new ApprovalTimeout(decision);
    return outcome;
  }

  // --- plumbing --------------------------------------------------------------------------

  /** Send with retries. Answers with the last response (possibly an error status) and how many retries it took. */
  async #send(method: string, path: string, init: SendInit): Promise<Answer> {
    const url = new URL(this.baseUrl + path);
    for (const [name, value] of Object.entries(init.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, value);
    }
    const headers: Record<string, string> = {
      Authorization: `Bearer ${this.#apiKey}`,
      Accept: "application/json",
      "User-Agent": `countersign-typescript/${VERSION}`,
      ...init.headers,
    };
    let body: string | undefined;
    if (init.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(init.body);
    }
    const seconds = init.timeout ?? this.timeout;

    let retries = 0;
    for (;;) {
      let response: Response | null = null;
      let failure: unknown = null;
      const timeout = AbortSignal.timeout(seconds * 1000);
      const signal = init.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
      try {
        response = await this.#fetch(url, { method, headers, body, signal });
        // Read the body here: a connection that breaks while the body arrives is a failure to retry too.
        const text = await response.text();
        if (!RETRYABLE_STATUS.has(response.status) || retries >= this.maxRetries) {
          return { response, text, retries };
        }
      } catch (error) {
        if (init.signal?.aborted) throw init.signal.reason;
        failure = error;
        response = null;
      }
      if (failure !== null && retries >= this.maxRetries) {
        throw new ConnectionFailed(`${method} ${url.pathname}: ${describe(failure)}`, { cause: failure });
      }
      retries += 1;
      await sleep(this.#retryDelay(retries, response), init.signal);
    }
  }

  /**
   * Seconds before retry number `attempt` (1, 2, …): the service's Retry-After when it gives
   * one, else capped exponential backoff with jitter, so many clients spread out.
   */
  #retryDelay(attempt: number, response: Response | null): number {
    const retryAfter = response ? retryAfterSeconds(response.headers.get("retry-after")) : null;
    if (retryAfter !== null) return Math.min(retryAfter, this.maxBackoff * 4);
    const base = Math.min(this.backoff * 2 ** (attempt - 1), this.maxBackoff);
    return base * (0.5 + Math.random() * 0.5);
  }
}

/** The JSON body for POST /decisions. Fields left out, undefined or null are not sent at all:
 * a policy fills in only what the agent did not send, so sending defaults would override it. */
export function decisionBody(request: DecisionCreate): Record<string, unknown> {
  if (typeof request !== "object" || request === null) {
    throw new TypeError("create() takes the decision as an object: { action, ... }");
  }
  const unknown = Object.keys(request).filter((name) => !DECISION_FIELDS.has(name)).sort();
  if (unknown.length) {
    throw new TypeError(`unknown decision field(s): ${unknown.join(", ")}`);
  }
  return Object.fromEntries(
    Object.entries(request).filter(([, value]) => value !== undefined && value !== null),
  );
}

export function newIdempotencyKey(): string {
  return `cs-${randomUUID().replaceAll("-", "")}`;
}

/** The body of a successful answer, or the APIError the answer stands for. */
function jsonOf({ response, text }: Answer): Record<string, unknown> {
  if (response.status >= 400) throw errorFromResponse(response, text);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new APIError({
      status: response.status,
      code: "invalid_response",
      message: "The service answered with something that is not JSON.",
      body: text,
      headers: response.headers,
    });
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new APIError({
      status: response.status,
      code: "invalid_response",
      message: "The service answered with JSON that is not an object.",
      body: data,
      headers: response.headers,
    });
  }
  return data as Record<string, unknown>;
}

// The API gives whole URLs; the cursor is all a caller needs (the base URL may differ behind a proxy).
function cursorOf(link: unknown): string | null {
  if (typeof link !== "string" || !link) return null;
  try {
    return new URL(link, "http://base.invalid").searchParams.get("cursor");
  } catch {
    return null;
  }
}

function isoOf(value: Date | string | undefined): string | undefined {
  return value instanceof Date ? value.toISOString() : value;
}

function waitParam(seconds: number): string {
  return String(Math.round(seconds * 1000) / 1000);
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(Math.max(value, low), high);
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    return cause instanceof Error ? `${error.message} (${cause.message})` : error.message;
  }
  return String(error);
}

function sleep(seconds: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, seconds * 1000);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}


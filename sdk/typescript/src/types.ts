/**
 * The API's JSON, typed. Names are the API's own (snake_case), exactly as in the contract, so
 * a request body reads like the curl in the docs and a decision is the object the service sent.
 */

export type Status = "pending" | "approved" | "denied" | "responded" | "expired" | "cancelled";
export type ResolvedStatus = Exclude<Status, "pending">;
export type Via = "email" | "slack" | "teams" | "web" | "api" | "timeout" | "policy";
export type Urgency = "low" | "normal" | "high" | "critical";
export type ResponseType = "choice" | "text";
export type OnTimeout = "expire" | "deny" | "approve";
/** How sure the service must be of who answers (asked), or was (an outcome's `verified`). */
export type Verification = "link" | "session" | "passkey";
export type Quorum = "any" | "all" | number;

/** JSON values, for details and metadata. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export interface Stage {
  approvers: string[];
  quorum?: Quorum;
}

export interface EscalationLevel {
  after_minutes: number;
  approvers: string[];
}

/**
 * Everything `POST /decisions` takes besides `action`. Leave a field out to let the service
 * (or the organization's policy) decide it: fields left out are not sent at all.
 */
export interface DecisionFields {
  /** Why; shown to the approver as plain text (≤ 20 000 characters). */
  context?: string;
  /** Key/value facts shown to the approver (e.g. amount, customer); policies match on them. */
  details?: JsonObject;
  /** One approver: an email address, `slack:U123ABC` or `group:<name>`. */
  approver?: string;
  /** Several approvers (use `approver`, `approvers` or `stages`). */
  approvers?: string[];
  /** How many approvals resolve it as approved; any single deny resolves it as denied. */
  quorum?: Quorum;
  /** Sequential sign-off: each stage is asked only after the previous one approved. */
  stages?: Stage[];
  /** The buttons; "approve" and "deny" map to those statuses, any other choice to `responded`. */
  options?: string[];
  /** "text": the approver answers a question in words. */
  response?: ResponseType;
  /** The approver may change `details` before approving; the outcome carries the edited details. */
  allow_edit?: boolean;
  urgency?: Urgency;
  /** When it stops waiting (fractions allowed). Default: the organization's. */
  timeout_minutes?: number;
  /** The outcome when time runs out with no answer. */
  on_timeout?: OnTimeout;
  /**
   * How sure the service must be of who answers: "link" (the default) takes an email or Slack
   * click; "session" only the approver portal, freshly signed in; "passkey" only the portal,
   * with one of the approver's passkeys.
   */
  verification?: Verification;
  /** The email address of the person the agent acts for: never asked, can never approve it. */
  requested_by?: string;
  /** True (the default): nobody approves two stages of this decision. */
  distinct_stage_approvers?: boolean;
  /** Who else is asked, and when, if nobody has answered. */
  escalation?: EscalationLevel[];
  escalation_repeat?: number;
  /** Reminders, in minutes after the start. */
  reminders?: number[];
  /** Where the outcome is POSTed, signed per Standard Webhooks (see `verifyWebhook`). */
  callback_url?: string;
  /** Echoed back untouched (e.g. a LangGraph thread id). */
  metadata?: JsonObject;
}

/** The body of `POST /decisions`. */
export interface DecisionCreate extends DecisionFields {
  /** What the agent wants to do, one line (1..500 characters). */
  action: string;
}

/** How a decision ended. `details` is what was finally approved (after any edit). */
export interface Outcome {
  status: ResolvedStatus;
  choice: string | null;
  text: string | null;
  note: string | null;
  /** Who answered: the approver's address, `system` for a timeout, `policy:<name>` for a rule. */
  by: string;
  via: Via;
  at: string;
  details: JsonObject;
  /** SHA-256 of what was finally approved; differs from the decision's when edited. */
  action_hash: string;
  /** How the person who answered was verified; null when nobody answered (timeout, policy, cancel). */
  verified: Verification | null;
}

/** One person (or channel) asked: at which stage or escalation level, and what came of it. */
export interface ApprovalRequest {
  address: string;
  channel: string;
  group: string | null;
  /** The away approver this delegate was asked for, if any. */
  on_behalf_of: string | null;
  stage: number;
  level: number;
  state: string;
  asked_at: string;
  notified_at: string | null;
  answered_at: string | null;
  answered_via: string | null;
  choice: string | null;
  note: string | null;
}

/** The decision object, as the service sends it. Times are ISO 8601 strings. */
export interface Decision {
  /** Starts with `dec_`. */
  id: string;
  status: Status;
  action: string;
  context: string;
  details: JsonObject;
  options: string[];
  response: ResponseType;
  allow_edit: boolean;
  urgency: Urgency;
  stages: Stage[];
  current_stage: number;
  escalation: EscalationLevel[];
  escalation_repeat: number;
  reminders: number[];
  on_timeout: OnTimeout;
  verification: Verification;
  /** The person the agent acts for; "" when not given. */
  requested_by: string;
  distinct_stage_approvers: boolean;
  /** The policy rule that matched it, if any. */
  policy: { name: string; action: string } | null;
  created_at: string;
  expires_at: string;
  resolved_at: string | null;
  metadata: JsonObject;
  callback_url: string | null;
  /** SHA-256 of the canonical JSON of action and details: what exactly was put to the approver. */
  action_hash: string;
  /** Null while pending. */
  outcome: Outcome | null;
  /** The outcome's note, at top level for The Handover's clients. */
  response_notes: string | null;
  /** Who was asked, at which stage or escalation level, and how they answered. */
  requests: ApprovalRequest[];
}

/** A resolved decision's outcome, with what a caller usually asks of it. */
export interface ApprovalOutcome extends Outcome {
  decision_id: string;
  /** status === "approved" */
  approved: boolean;
  /** The approver changed the details before approving (`details` holds the edited ones). */
  edited: boolean;
  /** The resolved decision it came from. */
  decision: Decision;
}

/** Filters of `GET /decisions` (the API's names). Times as `Date` or ISO 8601 strings. */
export interface DecisionFilters {
  status?: Status;
  created_after?: Date | string;
  created_before?: Date | string;
}

export interface DecisionListParams extends DecisionFilters {
  /** Page size, 1..200 (the service's default is 50). */
  limit?: number;
  /** From a previous page's `nextCursor` or `previousCursor`. */
  cursor?: string;
}

/** One page of `GET /decisions`, newest first. */
export interface DecisionPage {
  results: Decision[];
  /** Pass back as `cursor` for the next (older) page; null on the last page. */
  nextCursor: string | null;
  previousCursor: string | null;
}

/** A verified callback: `{"type": "decision.resolved", "timestamp", "data": <decision>}`. */
export interface WebhookEvent {
  /** The `webhook-id` header: the same on every retry of one delivery, for deduplication. */
  id: string;
  type: string;
  timestamp: string;
  decision: Decision;
  /** The decision's outcome (null only for an event that is not a resolution). */
  outcome: ApprovalOutcome | null;
  /** The parsed body, as received. */
  raw: { type: string; timestamp: string; data: Decision } & Record<string, unknown>;
}

/** The decision's outcome with `approved`/`edited` worked out, or null while it is pending. */
export function approvalOutcome(decision: Decision): ApprovalOutcome | null {
  const outcome = decision.outcome;
  if (!outcome) return null;
  return {
    ...outcome,
    decision_id: decision.id,
    approved: outcome.status === "approved",
    edited: Boolean(outcome.action_hash) && outcome.action_hash !== decision.action_hash,
    decision,
  };
}

/**
 * What every test needs to reach a live Countersign: its URL and an API key from the
 * environment (tests/test_sdk_typescript.py in the repository sets them, with the service under
 * pytest-django's live server), and "alice": a local endpoint that answers as alice would,
 * through her one-click email link.
 *
 * Without COUNTERSIGN_URL the tests are skipped, unless CI is set: then they fail.
 */

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";

import { Countersign, type ClientOptions } from "countersign";

const env = process.env;
const IN_CI = ["1", "true", "yes"].includes((env["CI"] ?? "").toLowerCase());

export const live = {
  url: env["COUNTERSIGN_URL"] ?? "",
  apiKey: env["COUNTERSIGN_API_KEY"] ?? "",
  webhookSecret: env["COUNTERSIGN_WEBHOOK_SECRET"] ?? "",
  approver: env["COUNTERSIGN_APPROVER"] ?? "alice@example.com",
  alice: env["COUNTERSIGN_TEST_ALICE"] ?? "",
};

const missing = [
  ["COUNTERSIGN_URL", live.url],
  ["COUNTERSIGN_API_KEY", live.apiKey],
  ["COUNTERSIGN_WEBHOOK_SECRET", live.webhookSecret],
  ["COUNTERSIGN_TEST_ALICE", live.alice],
]
  .filter(([, value]) => !value)
  .map(([name]) => name);

if (missing.length && IN_CI) {
  throw new Error(`CI must run these tests against a live Countersign; ${missing.join(", ")} not set.`);
}

/** For `describe(name, { skip }, …)`: why the live tests cannot run here, or false. */
export const skip: string | false = missing.length
  ? `needs a live Countersign (${missing.join(", ")}); run tests/test_sdk_typescript.py in the repository`
  : false;

/**
 * Options for each live `describe`: skipped without a service, and a test that hangs fails
 * by its name after two minutes instead of holding the whole run.
 */
export const liveSuite = { skip, timeout: 120_000 };

export function client(options: ClientOptions = {}): Countersign {
  return new Countersign({ baseUrl: live.url, apiKey: live.apiKey, ...options });
}

/** A marker unique to one test run, to find its own decisions among others. */
export function runId(): string {
  return randomUUID().slice(0, 8);
}

/** Alice opens her link for `choice` and confirms (with `form`: note, text, detail__<key>). */
export async function aliceAnswers(
  decisionId: string,
  choice: string,
  form: Record<string, string> = {},
): Promise<void> {
  const response = await fetch(`${live.alice}/answer`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ decision_id: decisionId, choice, form }),
  });
  const answer = (await response.json()) as { page_status?: number; error?: string };
  assert.equal(response.status, 200, `alice could not answer: ${answer.error}`);
  assert.equal(answer.page_status, 200, "alice's confirm page did not accept her answer");
}

export function later(seconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
}

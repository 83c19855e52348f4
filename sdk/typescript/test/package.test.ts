/** The package as published: its entry point, version and exports (no service needed). */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import * as countersign from "countersign";

test("VERSION is package.json's version, and goes in the User-Agent", () => {
  const manifest = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
  assert.equal(countersign.VERSION, manifest.version);
});

test("every error is a CountersignError, and every API error an APIError", () => {
  const { APIError, CountersignError } = countersign;
  for (const Kind of [
    countersign.InvalidRequest,
    countersign.AuthenticationError,
    countersign.PermissionDenied,
    countersign.NotFound,
    countersign.Conflict,
    countersign.PayloadTooLarge,
    countersign.RateLimited,
    countersign.ServerError,
  ]) {
    const error = new Kind({ status: 400, code: "x", message: "m" });
    assert.ok(error instanceof APIError && error instanceof CountersignError && error instanceof Error);
    assert.equal(error.name, Kind.name);
  }
  assert.ok(new countersign.ConnectionFailed("down") instanceof CountersignError);
  assert.ok(new countersign.WebhookVerificationError("bad") instanceof CountersignError);
});

test("idempotency keys are fresh each time", () => {
  const keys = new Set(Array.from({ length: 100 }, () => countersign.newIdempotencyKey()));
  assert.equal(keys.size, 100);
});

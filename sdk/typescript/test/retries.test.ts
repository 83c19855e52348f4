/**
 * Retries, against the live service behind a flaky proxy: a real HTTP server in front of
 * Countersign that loses answers, drops connections, stalls, or answers 503/429 as a load
 * balancer would, and passes everything else through. Each request's fate is scripted.
 */

import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";

import { ConnectionFailed, RateLimited, ServerError } from "countersign";

import { client, live, runId, liveSuite } from "./live.js";

/** What the proxy does with one request. */
type Fate =
  | "pass" // forward, and relay the answer
  | "lose-answer" // forward, let the service act, then drop the connection before answering
  | "reset" // drop the connection without forwarding
  | "stall" // never answer (the client's timeout must fire)
  | "503" // answer 503 like a load balancer with no healthy backend
  | "429"; // answer 429 with Retry-After: 0

interface Seen {
  method: string;
  path: string;
  idempotencyKey: string | undefined;
}

class FlakyProxy {
  readonly seen: Seen[] = [];
  #fates: Fate[] = [];
  #server = http.createServer((request, response) => this.#handle(request, response));
  #stalled: http.ServerResponse[] = [];

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** The next requests meet these fates, in order; after them, everything passes. */
  script(...fates: Fate[]): void {
    this.#fates = fates;
    this.seen.length = 0;
  }

  async stop(): Promise<void> {
    for (const response of this.#stalled) response.destroy();
    this.#server.closeAllConnections();
    await new Promise((resolve) => this.#server.close(resolve));
  }

  async #handle(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const header = request.headers["idempotency-key"];
    this.seen.push({
      method: request.method ?? "",
      path: request.url ?? "",
      idempotencyKey: Array.isArray(header) ? header[0] : header,
    });
    const fate = this.#fates.shift() ?? "pass";
    if (fate === "reset") return void request.socket.destroy();
    if (fate === "stall") return void this.#stalled.push(response);
    if (fate === "503") {
      response.writeHead(503, { "Content-Type": "text/html" }).end("<h1>503 Service Unavailable</h1>");
      return;
    }
    if (fate === "429") {
      response.writeHead(429, { "Content-Type": "application/json", "Retry-After": "0" });
      response.end(JSON.stringify({ error: { code: "rate_limited", message: "Slow down.", fields: {} } }));
      return;
    }
    const upstream = await fetch(live.url + request.url, {
      method: request.method,
      headers: Object.fromEntries(
        Object.entries(request.headers).filter(([name]) => !["host", "connection", "content-length"].includes(name)),
      ) as Record<string, string>,
      body: chunks.length ? Buffer.concat(chunks) : undefined,
    });
    const body = await upstream.text();
    if (fate === "lose-answer") return void request.socket.destroy();
    response.writeHead(upstream.status, { "Content-Type": upstream.headers.get("content-type") ?? "" }).end(body);
  }
}

describe("retries", liveSuite, () => {
  const proxy = new FlakyProxy();
  before(() => proxy.start());
  after(() => proxy.stop());
  const agent = () => client({ baseUrl: proxy.url, backoff: 0.05, maxBackoff: 0.2 });

  test("a create whose answer was lost is retried with the same Idempotency-Key: one decision, not two", async () => {
    const action = `Refund ${runId()}`;
    proxy.script("lose-answer");

    const decision = await agent().create({ action, approver: live.approver });

    const posts = proxy.seen.filter((r) => r.method === "POST");
    assert.equal(posts.length, 2, "asked, lost the answer, asked again");
    assert.ok(posts[0]?.idempotencyKey?.startsWith("cs-"));
    assert.equal(posts[1]?.idempotencyKey, posts[0]?.idempotencyKey);
    const mine = (await client().list({ limit: 50 })).results.filter((d) => d.action === action);
    assert.deepEqual(
      mine.map((d) => d.id),
      [decision.id],
    );
  });

  test("a dropped connection, a 503 and a 429 are each tried again", async () => {
    proxy.script("reset", "503", "429");

    const decision = await agent().create({ action: "Deploy v1.2 to prod", approver: live.approver });

    assert.equal(decision.status, "pending");
    assert.equal(proxy.seen.length, 4);
    assert.equal(new Set(proxy.seen.map((r) => r.idempotencyKey)).size, 1);
  });

  test("a request that stalls is timed out and tried again", async () => {
    const asked = await client().create({ action: "Deploy v1.2 to prod", approver: live.approver });
    proxy.script("stall");

    const read = await client({ baseUrl: proxy.url, timeout: 1, backoff: 0.01 }).get(asked.id);
    assert.equal(read.id, asked.id);
    assert.equal(proxy.seen.length, 2);
  });

  test("a cancel whose answer was lost returns the cancelled decision, not a Conflict", async () => {
    const asked = await client().create({ action: "Deploy v1.2 to prod", approver: live.approver });
    proxy.script("lose-answer");

    const cancelled = await agent().cancel(asked.id);

    assert.equal(cancelled.status, "cancelled");
  });

  test("when the retries run out, the last error is thrown: ServerError, RateLimited", async () => {
    proxy.script("503", "503", "503");
    const error = await client({ baseUrl: proxy.url, maxRetries: 2, backoff: 0.01 })
      .get("dec_whatever")
      .catch((e: unknown) => e);
    assert.ok(error instanceof ServerError);
    assert.equal(error.status, 503);
    assert.equal(error.code, "http_503"); // a proxy's HTML page: no contract body
    assert.equal(proxy.seen.length, 3);

    proxy.script("429", "429");
    const limited = await client({ baseUrl: proxy.url, maxRetries: 1, backoff: 0.01 })
      .get("dec_whatever")
      .catch((e: unknown) => e);
    assert.ok(limited instanceof RateLimited);
    assert.equal(limited.code, "rate_limited");
    assert.equal(limited.retryAfter, 0);
  });

  test("a service nobody answers for is ConnectionFailed, with the cause", async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve)); // nothing listens there any more

    const error = await client({ baseUrl: `http://127.0.0.1:${port}`, maxRetries: 1, backoff: 0.01 })
      .get("dec_whatever")
      .catch((e: unknown) => e);

    assert.ok(error instanceof ConnectionFailed);
    assert.ok(error.cause instanceof Error);
    assert.match(error.message, /GET \/decisions\/dec_whatever/);
  });
});

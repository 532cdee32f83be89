// SPDX-License-Identifier: Apache-2.0
// Check counter for the SDK tour: every check is named, counted and reported in TAP-like lines, and a summary
// is printed at the end. A check that throws (assertion, SDK error, timeout) is a failure; nothing is skipped
// silently: a check whose prerequisite failed fails with the reason.
import assert from "node:assert/strict";

const CHECK_TIMEOUT_MS = Number(process.env.INTEROP_CHECK_TIMEOUT_MS || 120000);

const state = { passed: 0, failed: 0, failures: [], section: "" };

export function section(name) {
  state.section = name;
  console.log(`# --- ${name}`);
}

function describe(err) {
  if (err === undefined || err === null) return String(err);
  const parts = [];
  if (err.name) parts.push(err.name);
  if (err.statusCode !== undefined) parts.push(`status=${err.statusCode}`);
  if (err.code !== undefined) parts.push(`code=${err.code}`);
  let msg = err.message === undefined ? String(err) : String(err.message);
  if (msg.length > 600) msg = msg.slice(0, 600) + "...";
  parts.push(msg.replace(/\s+/g, " "));
  return parts.join(" ");
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`check timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Runs one check; returns the value fn returned, or undefined when it failed (callers use need() on it).
export async function check(name, fn, { timeoutMs = CHECK_TIMEOUT_MS } = {}) {
  const label = state.section ? `${state.section}: ${name}` : name;
  const n = state.passed + state.failed + 1;
  try {
    const value = await withTimeout(Promise.resolve().then(fn), timeoutMs, label);
    state.passed++;
    console.log(`ok ${n} - ${label}`);
    return value;
  } catch (err) {
    state.failed++;
    const why = describe(err);
    state.failures.push(`${label}: ${why}`);
    console.log(`not ok ${n} - ${label}\n#   ${why}`);
    if (process.env.INTEROP_VERBOSE && err && err.stack) console.log(err.stack.replace(/^/gm, "#   "));
    return undefined;
  }
}

// Guard for values produced by earlier checks: throws a clear error so the dependent check fails with a reason.
export function need(value, what) {
  if (value === undefined || value === null) throw new Error(`prerequisite failed earlier: ${what}`);
  return value;
}

// Asserts that fn() rejects with a RestError of the given HTTP status and (optionally) service error code.
export async function expectRestError(fn, status, code) {
  let err;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected a RestError ${status}${code ? " " + code : ""}, the call succeeded`);
  assert.equal(err.name, "RestError", `expected RestError, got ${describe(err)}`);
  assert.equal(err.statusCode, status, `expected HTTP ${status}, got ${describe(err)}`);
  if (code !== undefined) assert.equal(err.code, code, `expected error code ${code}, got ${describe(err)}`);
  return err;
}

export function summary() {
  const total = state.passed + state.failed;
  console.log(`1..${total}`);
  console.log(`# interop SDK tour: ${total} checks, ${state.passed} passed, ${state.failed} failed`);
  for (const f of state.failures) console.log(`#   FAILED ${f}`);
  return state.failed === 0 && total > 0;
}

export { assert };

// SPDX-License-Identifier: Apache-2.0
// Wire facts over every data-plane exchange the SDK made during the tour (recorded by lib/wire.mjs).
import { assert, check } from "../lib/harness.mjs";
import { exchanges } from "../lib/wire.mjs";

const B64URL = /^[A-Za-z0-9_-]*$/;
const B64 = /^[A-Za-z0-9+/]*={0,2}$/;
const KEY_BINARY = ["n", "e", "x", "y"];
const RESULT_BINARY = ["value", "iv", "tag", "aad"];

function parseBody(x) {
  if (!x.body) return undefined;
  try {
    return JSON.parse(x.body);
  } catch {
    return undefined;
  }
}

// Collects up to `max` problems per check so a failure names examples instead of one.
function problems(max = 5) {
  const list = [];
  let count = 0;
  return {
    add(msg) {
      count++;
      if (list.length < max) list.push(msg);
    },
    assertNone(what) {
      assert.equal(count, 0, `${count} ${what}, e.g.: ${list.join(" | ")}`);
    },
  };
}

// Minimum amounts of evidence hold for a full tour only; a run of selected sections sees less traffic.
const FULL_TOUR = !process.env.INTEROP_SECTIONS;
function atLeast(n, min, what) {
  if (FULL_TOUR) assert.ok(n >= min, `only ${n} ${what} recorded`);
}

const pathOf = (url) => new URL(url).pathname;
const opOf = (x) => `${x.method} ${pathOf(x.url)}`;

export async function runWire(ctx) {
  const origins = new Set([ctx.vaultUrl, ctx.hsmUrl]);
  const dataPlane = exchanges.filter((x) => origins.has(new URL(x.url).origin));
  const hsmOrigin = ctx.hsmUrl;

  await check(`recorded the SDK's data-plane traffic (${dataPlane.length} exchanges)`, () => {
    atLeast(dataPlane.length, 200, "exchanges");
  });

  await check("every response carries x-ms-request-id and echoes x-ms-client-request-id", () => {
    const p = problems();
    const sent = dataPlane.filter((x) => x.clientRequestId).length;
    atLeast(sent, 100, "requests with x-ms-client-request-id");
    for (const x of dataPlane) {
      if (!x.headers.requestId) p.add(`${opOf(x)} -> ${x.status} without x-ms-request-id`);
      if (x.clientRequestId && x.headers.clientRequestId !== x.clientRequestId) {
        p.add(`${opOf(x)} -> ${x.status} echoed '${x.headers.clientRequestId}'`);
      }
    }
    p.assertNone("responses with missing request ids");
  });

  await check("JSON bodies are served as application/json; charset=utf-8", () => {
    const p = problems();
    for (const x of dataPlane) {
      if (!x.body || x.status === 204) continue;
      if (!/^application\/json;\s*charset=utf-8$/i.test(x.headers.contentType || "")) {
        p.add(`${opOf(x)} -> ${x.status} Content-Type '${x.headers.contentType}'`);
      }
    }
    p.assertNone("responses with another content type");
  });

  await check("token-less requests get 401 with a Bearer challenge, nothing else", () => {
    const p = problems();
    let n = 0;
    for (const x of dataPlane.filter((e) => !e.hadAuth)) {
      n++;
      if (x.status !== 401 || !/^Bearer /.test(x.headers.wwwAuthenticate || "")) {
        p.add(`${opOf(x)} -> ${x.status} '${x.headers.wwwAuthenticate}'`);
      }
    }
    atLeast(n, 2, "challenge probes");
    p.assertNone("token-less requests not challenged");
  });

  await check("dates are integer Unix seconds in every attributes object", () => {
    const p = problems();
    const visit = (o, where) => {
      if (!o || typeof o !== "object") return;
      if (o.attributes && typeof o.attributes === "object") {
        for (const f of ["created", "updated", "nbf", "exp"]) {
          const v = o.attributes[f];
          if (v !== undefined && !Number.isInteger(v)) p.add(`${where}: attributes.${f}=${JSON.stringify(v)}`);
        }
      }
      for (const f of ["deletedDate", "scheduledPurgeDate"]) {
        if (o[f] !== undefined && !Number.isInteger(o[f])) p.add(`${where}: ${f}=${JSON.stringify(o[f])}`);
      }
      for (const v of Object.values(o)) if (v && typeof v === "object") visit(v, where);
    };
    for (const x of dataPlane) if (x.status < 300) visit(parseBody(x), opOf(x));
    p.assertNone("non-integer dates");
  });

  await check("key material and crypto results are base64url without padding", () => {
    const p = problems();
    let seen = 0;
    for (const x of dataPlane) {
      if (x.status >= 300) continue;
      const b = parseBody(x);
      if (!b) continue;
      const keys = [];
      if (b.key) keys.push(b.key);
      for (const k of keys) {
        for (const f of KEY_BINARY) {
          if (k[f] === undefined) continue;
          seen++;
          if (typeof k[f] !== "string" || !B64URL.test(k[f])) p.add(`${opOf(x)}: key.${f}`);
        }
      }
      if (/\/(sign|encrypt|decrypt|wrapkey|unwrapkey)$/i.test(pathOf(x.url)) || /\/rng$/i.test(pathOf(x.url))) {
        for (const f of RESULT_BINARY) {
          if (b[f] === undefined) continue;
          seen++;
          if (typeof b[f] !== "string" || !B64URL.test(b[f])) p.add(`${opOf(x)}: ${f}`);
        }
      }
    }
    atLeast(seen, 100, "binary members");
    p.assertNone("binary members not in base64url");
  });

  await check("certificate cer is standard base64 and x5t base64url", () => {
    const p = problems();
    let seen = 0;
    for (const x of dataPlane) {
      if (x.status >= 300 || !/\/certificates\//.test(pathOf(x.url))) continue;
      const b = parseBody(x);
      if (!b || b.cer === undefined) continue;
      seen++;
      if (!B64.test(b.cer)) p.add(`${opOf(x)}: cer`);
      if (b.x5t !== undefined && !B64URL.test(b.x5t)) p.add(`${opOf(x)}: x5t`);
    }
    atLeast(seen, 5, "certificate bundles");
    p.assertNone("certificate encodings wrong");
  });

  await check("crypto results: kid is the versioned key id; Managed HSM adds alg, vault RSA does not", () => {
    const p = problems();
    for (const x of dataPlane) {
      const path = pathOf(x.url);
      const m = /^\/keys\/([^/]+)(?:\/([^/]*))?\/(sign|encrypt|decrypt|wrapkey|unwrapkey)$/i.exec(path);
      if (!m || x.status !== 200) continue;
      const b = parseBody(x);
      if (!b) continue;
      const origin = new URL(x.url).origin;
      const re = new RegExp(`^${origin.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}/keys/${m[1]}/[0-9a-f]{32}$`, "i");
      if (!re.test(b.kid || "")) p.add(`${opOf(x)}: kid '${b.kid}'`);
      if (origin === hsmOrigin && typeof b.alg !== "string") p.add(`${opOf(x)}: Managed HSM result without alg`);
      if (origin !== hsmOrigin && b.alg !== undefined) p.add(`${opOf(x)}: vault result with alg`);
    }
    p.assertNone("crypto results off the recorded shape");
  });

  await check("list pages: nextLink absolute on the same vault with api-version and $skiptoken, maxresults kept; last page nextLink null", () => {
    const p = problems();
    let followed = 0, lastPages = 0;
    for (const x of dataPlane) {
      if (x.status !== 200 || x.method !== "GET") continue;
      const b = parseBody(x);
      if (!b || !Array.isArray(b.value) || !("nextLink" in b || "value" in b)) continue;
      if (!("nextLink" in b)) {
        p.add(`${opOf(x)}: no nextLink member`);
        continue;
      }
      if (b.nextLink === null) {
        lastPages++;
        continue;
      }
      followed++;
      let u;
      try {
        u = new URL(b.nextLink);
      } catch {
        p.add(`${opOf(x)}: nextLink not absolute: ${b.nextLink}`);
        continue;
      }
      const req = new URL(x.url);
      if (u.origin !== req.origin) p.add(`${opOf(x)}: nextLink on ${u.origin}`);
      if (u.pathname.toLowerCase() !== req.pathname.toLowerCase()) p.add(`${opOf(x)}: nextLink path ${u.pathname}`);
      if (!u.searchParams.get("api-version")) p.add(`${opOf(x)}: nextLink without api-version`);
      if (!u.searchParams.get("$skiptoken")) p.add(`${opOf(x)}: nextLink without $skiptoken`);
      const mr = req.searchParams.get("maxresults");
      if (mr && u.searchParams.get("maxresults") !== mr) p.add(`${opOf(x)}: maxresults ${mr} dropped from nextLink`);
      if (mr && b.value.length > Number(mr)) p.add(`${opOf(x)}: ${b.value.length} items > maxresults ${mr}`);
    }
    atLeast(followed, 10, "nextLinks");
    atLeast(lastPages, 10, "last pages");
    p.assertNone("paging problems");
  });

  await check("errors have {error:{code,message}} bodies", () => {
    const p = problems();
    let n = 0;
    for (const x of dataPlane) {
      if (x.status < 400 || !x.hadAuth) continue;
      if (x.status === 401 && hsmOrigin === new URL(x.url).origin && !x.body) continue; // MHSM 401: empty body
      n++;
      const b = parseBody(x);
      if (!b || !b.error || typeof b.error.code !== "string" || typeof b.error.message !== "string") {
        p.add(`${opOf(x)} -> ${x.status}: ${String(x.body).slice(0, 120)}`);
      }
    }
    atLeast(n, 20, "error responses");
    p.assertNone("malformed error bodies");
  });

  await check("status codes: certificate create 202, purges 204, everything else that succeeded 200", () => {
    const p = problems();
    let creates = 0, purges = 0;
    for (const x of dataPlane) {
      if (x.status >= 300) continue;
      const path = pathOf(x.url);
      if (x.method === "POST" && /^\/certificates\/[^/]+\/create$/i.test(path)) {
        creates++;
        if (x.status !== 202) p.add(`${opOf(x)} -> ${x.status}`);
      } else if (x.method === "DELETE" && /^\/deleted(keys|secrets|certificates)\/[^/]+$/i.test(path)) {
        purges++;
        if (x.status !== 204) p.add(`${opOf(x)} -> ${x.status}`);
      } else if (/\/pending\/merge$/i.test(path)) {
        if (x.status !== 201 && x.status !== 200) p.add(`${opOf(x)} -> ${x.status}`);
      } else if (x.status !== 200) {
        p.add(`${opOf(x)} -> ${x.status}`);
      }
    }
    atLeast(creates, 5, "certificate creates");
    atLeast(purges, 5, "purges");
    p.assertNone("unexpected success statuses");
  });

  await check("secret values only where they belong: not in PATCH, DELETE, list or recover answers", () => {
    const p = problems();
    let n = 0;
    for (const x of dataPlane) {
      const path = pathOf(x.url);
      if (x.status !== 200 || !/^\/(deleted)?secrets(\/|$)/i.test(path)) continue;
      const b = parseBody(x);
      if (!b) continue;
      const isList = Array.isArray(b.value);
      const valueless = x.method === "PATCH" || x.method === "DELETE" || isList || /\/recover$/i.test(path) ||
        (x.method === "GET" && /^\/deletedsecrets\//i.test(path));
      if (!valueless) continue;
      n++;
      if (isList) {
        for (const item of b.value) if ("value" in item) p.add(`${opOf(x)}: list item with value`);
      } else if ("value" in b) {
        p.add(`${opOf(x)}: answer carries the secret value`);
      }
    }
    atLeast(n, 10, "value-less secret answers");
    p.assertNone("secret answers leaking values");
  });

  await check("key lists carry no key material; vault keys report hsmPlatform, Managed HSM keys do not", () => {
    const p = problems();
    for (const x of dataPlane) {
      if (x.status !== 200 || x.method === "DELETE") continue;
      const path = pathOf(x.url);
      if (!/^\/(deleted)?keys(\/|$)/i.test(path)) continue;
      const b = parseBody(x);
      if (!b) continue;
      const mhsm = new URL(x.url).origin === hsmOrigin;
      if (Array.isArray(b.value)) {
        for (const item of b.value) {
          if ("key" in item) p.add(`${opOf(x)}: list item with key material`);
          if (typeof item.kid !== "string") p.add(`${opOf(x)}: list item without kid`);
        }
        continue;
      }
      if (!b.key || !b.attributes) continue;
      const hp = b.attributes.hsmPlatform;
      if (mhsm && hp !== undefined) p.add(`${opOf(x)}: Managed HSM key with hsmPlatform`);
      if (!mhsm) {
        const want = /-HSM$/.test(b.key.kty) ? "2" : "0";
        if (hp !== want) p.add(`${opOf(x)}: ${b.key.kty} with hsmPlatform ${JSON.stringify(hp)}`);
      }
    }
    p.assertNone("key answers off the recorded shape");
  });

  await check("Managed HSM challenges have an empty body, vault challenges the Unauthorized error", () => {
    const p = problems();
    for (const x of dataPlane.filter((e) => !e.hadAuth && e.status === 401)) {
      const mhsm = new URL(x.url).origin === hsmOrigin;
      if (mhsm && x.body) p.add(`${opOf(x)}: Managed HSM 401 with body ${x.body.slice(0, 80)}`);
      if (!mhsm) {
        const b = parseBody(x);
        if (!b || !b.error || b.error.code !== "Unauthorized") p.add(`${opOf(x)}: vault 401 body ${String(x.body).slice(0, 80)}`);
      }
    }
    p.assertNone("challenge bodies off the recorded shape");
  });
}

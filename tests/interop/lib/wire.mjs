// SPDX-License-Identifier: Apache-2.0
// Passive recorder of the SDK's data-plane exchanges (a pipeline policy that only reads), so the wire
// section can check facts the SDK tolerates but real clients rely on.
// Bodies are kept only for successful JSON responses and capped; Authorization headers are never kept.
const MAX_BODY = 64 * 1024;
const MAX_EXCHANGES = 20000;

export const exchanges = [];

export const wirePolicy = {
  name: "interopWireRecorder",
  async sendRequest(request, next) {
    const response = await next(request);
    if (exchanges.length < MAX_EXCHANGES) {
      const text = typeof response.bodyAsText === "string" && response.bodyAsText.length <= MAX_BODY
        ? response.bodyAsText : undefined;
      exchanges.push({
        method: request.method,
        url: request.url,
        hadAuth: request.headers.has("authorization"),
        clientRequestId: request.headers.get("x-ms-client-request-id"),
        status: response.status,
        headers: {
          requestId: response.headers.get("x-ms-request-id"),
          clientRequestId: response.headers.get("x-ms-client-request-id"),
          contentType: response.headers.get("content-type"),
          wwwAuthenticate: response.headers.get("www-authenticate"),
        },
        body: text,
      });
    }
    return response;
  },
};
